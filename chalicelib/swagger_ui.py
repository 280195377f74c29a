"""Swagger UI served by the app itself from the swagger-ui-bundle package (no CDN: /docs works offline)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from swagger_ui_bundle import swagger_ui_path

# Only these files are ever served: a name is looked up here, never joined onto a path.
ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "application/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": "application/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Seat booking API</title>
  <link rel="stylesheet" href="{prefix}/swagger-ui.css">
  <link rel="icon" type="image/png" href="{prefix}/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{prefix}/swagger-ui-bundle.js"></script>
  <script src="{prefix}/swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: "{openapi_url}",
      dom_id: "#swagger-ui",
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "StandaloneLayout",
      validatorUrl: null
    }});
  </script>
</body>
</html>
"""


def docs_page_html(openapi_url: str = "/openapi.json", asset_prefix: str = "/docs/assets") -> str:
    # validatorUrl: null — Swagger UI would otherwise send the document to a public validator.
    return PAGE.format(prefix=asset_prefix, openapi_url=openapi_url)


@cache
def asset(name: str) -> tuple[bytes | str, str] | None:
    """(content, content type) of a whitelisted asset, or None. Text assets are str (Chalice sends bytes
    bodies only for binary content types)."""
    content_type = ASSETS.get(name)
    if content_type is None:
        return None
    data = (Path(swagger_ui_path) / name).read_bytes()
    return (data, content_type) if content_type.startswith("image/") else (data.decode("utf-8"), content_type)
