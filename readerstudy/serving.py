"""Blinded image delivery: the one HTTP response every served image goes out as, whatever its class.

The reading screen, the prefetch of the next case and the coordinator's case list all send images through
:func:`blinded_png_response`, and the blinding audit probes this same function for Content-Length, headers and
response time, so what it measures is what a reader's browser receives (less the site's middleware, which treats
every image response alike; the HTTP tests check the whole stack independently).
"""

from __future__ import annotations

from django.http import FileResponse, Http404

# Response headers a reader may compare between images; every one is the same for every served image.
BLINDED_IMAGE_HEADERS = {
    "Content-Type": "image/png",
    "Cache-Control": "private, max-age=86400, immutable",
    "X-Content-Type-Options": "nosniff",
}


def blinded_png_response(image_field) -> FileResponse:
    """A served PNG as a response with the same headers for every image. Served files all have the same byte
    length for a display size (`imaging.png.served_png_length`), so Content-Length says nothing either."""
    try:
        handle = image_field.open("rb")
    except FileNotFoundError as exc:  # a lost file is missing, not a server error
        raise Http404 from exc
    response = FileResponse(handle, content_type=BLINDED_IMAGE_HEADERS["Content-Type"])
    # The stored file name is a per-case constant that readers could compare; say nothing about the file.
    del response["Content-Disposition"]
    for name, value in BLINDED_IMAGE_HEADERS.items():
        response[name] = value
    return response
