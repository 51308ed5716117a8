"""The RFC 9457 problem document every error of the API answers with."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Problem", "ProblemFieldError"]


class ProblemFieldError(BaseModel):
    """One invalid input of a 400 ``invalid request``."""

    location: str = Field(description="where: body.field, query.name, path.name")
    message: str


class Problem(BaseModel):
    """``application/problem+json`` (RFC 9457): what went wrong, for people and programs."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "about:blank",
                    "title": "forbidden",
                    "status": 403,
                    "detail": "alice (subbrain) may not consent_read_all consent:*: no policy "
                    "line allows subbrain to consent_read_all in lithium-battery",
                    "code": "exchange.error_table.ForbiddenError",
                }
            ]
        },
    )

    type: str = Field("about:blank", description="a URI naming the kind of problem")
    title: str = Field(description="a short summary of the kind of problem")
    status: int = Field(ge=100, le=599, description="the HTTP status")
    detail: str | None = Field(
        None, description="what happened on this request (absent on an internal error)"
    )
    code: str | None = Field(
        None, description="the error's stable machine name (its class's dotted path)"
    )
    errors: list[ProblemFieldError] | None = Field(
        None, description="on a 400 invalid request: each invalid input"
    )
