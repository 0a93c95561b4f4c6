"""What the public may see of a view document: moderation applied, internal keys removed, duplicates merged."""

from __future__ import annotations

from typing import Any

PHOTO_INTERNALS = ("blob_key", "thumbnail_key")


def public_detail(doc: dict[str, Any], duplicates: dict[str, Any] | None) -> dict[str, Any] | None:
    """The detail as the public sees it, or None when staff have hidden the issue.

    Hidden comments are left out; the original of duplicates lists them, and their
    upvotes count towards its ``upvotes_total``.
    """
    if doc.get("hidden"):
        return None
    dupes = (duplicates or {}).get("duplicates", {})
    return {
        **doc,
        "comment_list": [c for c in doc.get("comment_list", []) if not c.get("hidden")],
        "photos": [{k: v for k, v in p.items() if k not in PHOTO_INTERNALS} for p in doc.get("photos", [])],
        "duplicates": [{"id": k, "upvotes": v} for k, v in sorted(dupes.items())],
        "upvotes_total": doc.get("upvotes", 0) + sum(dupes.values()),
    }
