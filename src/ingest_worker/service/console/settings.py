"""The console's settings (`INGEST_CONSOLE_*`)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConsoleSettings(BaseSettings):
    """The web console served at `/` by the gateway (`INGEST_CONSOLE_*`)."""

    model_config = SettingsConfigDict(env_prefix="INGEST_CONSOLE_", extra="ignore", frozen=True)

    session_secret: SecretStr | None = Field(
        default=None,
        min_length=32,
        description="Key that signs the console's session cookies (at least 32 characters; "
        "the same on every gateway replica). Required for signing in outside `ingest-worker "
        "dev`; under dev a random key is generated at start when unset.",
    )
    session_max_age_seconds: int = Field(
        default=8 * 3600,
        ge=60,
        le=7 * 86400,
        description="How long a console sign-in lasts; removing the token from the "
        "credentials ends its sessions at once.",
    )
    command_wait_seconds: float = Field(
        default=5.0,
        gt=0,
        le=30,
        description="How long a quick action waits for the command's outcome before the page "
        "says it is still pending.",
    )
