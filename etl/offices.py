"""The registry of offices allowed to drop files (`schemas/offices.yaml`, CREDITPIPE_OFFICES)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from etl import settings
from etl.checks.identifiers import check_uscc
from etl.contracts import read_yaml
from etl.errors import ConfigError

CITY_DISTRICT = "310000"  # the city office may submit for any district (SPEC.md §7)


class Office(BaseModel):
    """One office: who it is, what it may submit and for whom."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="inbox folder name")
    name: str
    uscc: str
    district: str = Field(pattern=r"^\d{6}$")
    datasets: list[str]
    authorities: list[str] = Field(default_factory=list)

    @property
    def covers_all_districts(self) -> bool:
        return self.district == CITY_DISTRICT


class Registry(BaseModel):
    """All registered offices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    offices: list[Office]

    @model_validator(mode="after")
    def _valid(self) -> Registry:
        ids = [o.id for o in self.offices]
        if len(ids) != len(set(ids)):
            raise ValueError(
                f"office ids declared twice: {sorted({i for i in ids if ids.count(i) > 1})}"
            )
        codes = [o.uscc for o in self.offices] + [a for o in self.offices for a in o.authorities]
        outcome = check_uscc(pd.Series(codes, dtype="str"))
        bad = [c for c, ok in zip(codes, outcome.checksum_ok, strict=True) if not ok]
        if bad:
            raise ValueError(f"codes failing the GB 32100 check: {bad}")
        return self

    def get(self, office_id: str) -> Office | None:
        return next((o for o in self.offices if o.id == office_id), None)


def load_offices(path: Path | None = None) -> Registry:
    """Load and validate the registry; errors name the file and key."""
    path = path or settings.offices_path()
    data = read_yaml(path)
    try:
        return Registry.model_validate(data)
    except ValidationError as exc:
        details = "\n".join(
            f"{path}: {'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError("报送机构登记表无效：\n" + details) from None
