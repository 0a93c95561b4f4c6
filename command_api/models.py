"""The write API's request and response bodies: strict shapes, so bad input is a clear 422."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")


def _email(value: str) -> str:
    value = value.strip()
    if len(value) > 254 or not EMAIL.match(value):
        raise ValueError("not a valid email address")
    return value


def _password(value: str) -> str:
    """A length-first policy (NIST SP 800-63B): long enough, not absurdly long, not blank."""
    if len(value) < 10:
        raise ValueError("a password needs at least 10 characters")
    if value.strip() == "" or len(set(value)) < 4:
        raise ValueError("a password needs more than a few distinct characters")
    return value


def _text(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in value):
        raise ValueError("must not contain control characters")
    return value


Email = Annotated[str, Field(max_length=254, examples=["ada@example.org"]), AfterValidator(_email)]
Password = Annotated[
    str, Field(min_length=1, max_length=256, examples=["correct horse battery"]), AfterValidator(_password)
]
DisplayName = Annotated[str, Field(min_length=1, max_length=80, examples=["Ada"]), AfterValidator(_text)]
Title = Annotated[
    str, Field(min_length=3, max_length=140, examples=["Deep pothole on Main Street"]), AfterValidator(_text)
]
Description = Annotated[
    str, Field(min_length=1, max_length=5000, examples=["Two feet wide, near the bus stop."]), AfterValidator(_text)
]
Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$", examples=["pothole"])]
Body = Annotated[str, Field(min_length=1, max_length=5000), AfterValidator(_text)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegisterBody(Strict):
    email: Email
    password: Password
    display_name: DisplayName


class RefreshBody(Strict):
    refresh_token: str = Field(min_length=1, max_length=4096)


class ProfilePatch(Strict):
    display_name: DisplayName


class Location(Strict):
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False, examples=[51.5074])
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False, examples=[-0.1278])


AttributeValue = (
    Annotated[str, Field(max_length=5000)] | bool | int | float | list[Annotated[str, Field(max_length=200)]]
)


class ReportBody(Strict):
    title: Title
    description: Description
    category: Code
    location: Location
    address: Annotated[str, Field(max_length=300), AfterValidator(_text)] | None = None
    attributes: Annotated[
        dict[Annotated[str, Field(max_length=64)], AttributeValue | None],
        Field(max_length=20, description="answers to the category's extra questions (see GET /v1/categories)"),
    ] = Field(default_factory=dict)


Reason = Annotated[str, Field(min_length=1, max_length=500, examples=["abusive language"]), AfterValidator(_text)]


class ModerationBody(Strict):
    action: Literal["hide", "unhide"]
    reason: Reason


class AttributeBody(Strict):
    code: Code
    datatype: Literal["string", "text", "number", "boolean", "datetime", "singlevaluelist", "multivaluelist"]
    description: Annotated[str, Field(max_length=500)] = ""
    required: bool = False
    values: Annotated[list[Annotated[str, Field(min_length=1, max_length=100)]], Field(max_length=100)] = Field(
        default_factory=list
    )


class CategoryBody(Strict):
    name: Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_text)]
    description: Annotated[str, Field(max_length=1000)] = ""
    department: Code
    attributes: Annotated[list[AttributeBody], Field(max_length=20)] = Field(default_factory=list)


class LogoutBody(Strict):
    refresh_token: str = Field(min_length=1, max_length=4096)


class EditBody(Strict):
    title: Title | None = None
    description: Description | None = None
    category: Code | None = None


class StatusBody(Strict):
    status: str = Field(pattern=r"^[a-z_]{1,32}$", examples=["acknowledged"])
    note: Annotated[str, Field(max_length=2000), AfterValidator(_text)] | None = None


class AssignmentBody(Strict):
    department: Code


class CommentBody(Strict):
    body: Body


class DuplicateBody(Strict):
    issue_id: str = Field(min_length=1, max_length=64)


class CommandAccepted(BaseModel):
    """What every command answers."""

    id: str
    version: int
    position: str | None = Field(description="opaque consistency token: send it back as X-Consistency-Token")


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int
