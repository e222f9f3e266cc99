"""The Gradio clinician app: `build_ui(api_url)` (ui.app), runnable alone with `python -m ui`."""


def build_ui(api_url: str | None = None):
    """Deferred import: importing `ui` must not pull in Gradio for code that only needs the client."""
    from ui.app import build_ui as build

    return build(api_url)


__all__ = ["build_ui"]
