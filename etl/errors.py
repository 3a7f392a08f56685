"""The project's exception tree.

Every error a user can cause carries a stable code and a Chinese message, so the CLI and the
receipts can show it without a traceback (STYLE.md: a small exception tree, no swallowed errors).
"""

from __future__ import annotations


class CreditpipeError(Exception):
    """Base of every error creditpipe raises on purpose."""

    code = "E_CREDITPIPE"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class ConfigError(CreditpipeError):
    """A configuration file (contract, offices registry, policy) is missing or broken."""

    code = "E_CONFIG"


class ContractError(ConfigError):
    """A data contract YAML does not validate; the message names the file and the key."""

    code = "E_CONTRACT"


class InputFileError(CreditpipeError):
    """A dropped file cannot be processed as a whole (encoding, structure, missing column)."""

    code = "E_FILE"


class StoreError(CreditpipeError):
    """The store cannot be reached or used: a run cannot complete without it."""

    code = "E_STORE"


class ReviewError(CreditpipeError):
    """A review command cannot be applied to the flag it names (unknown, decided, not open)."""

    code = "E_FLAG_UNKNOWN"


class PublishError(CreditpipeError):
    """Publication cannot complete; nothing partial is left behind."""

    code = "E_PUBLISH"


class PersonalDataError(PublishError):
    """A public file would contain a full resident ID number: publication stops instead."""

    code = "E_PUBLISH_PERSONAL_ID"

    def __init__(self, column: str) -> None:
        from etl.checks.codes import message

        super().__init__(message("E_PUBLISH_PERSONAL_ID", column=column))
