"""Printable PDFs of pages (a student's feedback, a teacher's bundle of every student's).

WeasyPrint lays out HTML and CSS with Pango and finds fonts through fontconfig, so the
machine needs Pango (Debian: libpango-1.0-0, libpangoft2-1.0-0) and, for Chinese, a CJK
font (Debian: fonts-noto-cjk), which the print stylesheet names first. Without them a PDF
view answers 503 and the printable page (the same feedback with the print stylesheet,
printed from the browser) still works.

Nothing is fetched while rendering: the document is our own template, but it carries
students' text, and a renderer that followed URLs could be made to read files or call
internal addresses. The stylesheet is read from the static files by path; every other URL
(an image, a font, a link to a stylesheet) is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.staticfiles import finders
from django.http import HttpResponse
from django.template.loader import render_to_string

PRINT_STYLESHEET = "css/print.css"


class ExternalResourceRefused(ValueError):
    """A URL in the document was not fetched (WeasyPrint logs it and renders on)."""


class PdfUnavailable(RuntimeError):
    """WeasyPrint or the system libraries it loads (Pango) are missing on this machine."""


def _refuse(url: str) -> None:
    raise ExternalResourceRefused(url)


def html_to_pdf(html: str) -> bytes:
    # Imported here: WeasyPrint loads Pango through cffi on import, which only the PDF
    # views need (the web process and the workers start without it).
    try:
        import weasyprint
    except (ImportError, OSError) as exc:  # OSError: cffi could not load Pango
        raise PdfUnavailable(str(exc)) from exc

    # WeasyPrint 70's fetchers are URLFetcher subclasses (a plain function is no longer one).
    class NoFetching(weasyprint.urls.URLFetcher):
        """Every URL in the document is refused (a warning in WeasyPrint's log)."""

        def fetch(self, url: str, headers: Any = None) -> Any:
            _refuse(url)

    stylesheet = finders.find(PRINT_STYLESHEET)
    if not isinstance(stylesheet, str):
        raise FileNotFoundError(PRINT_STYLESHEET)
    fetcher = NoFetching(fail_on_errors=False)
    document = weasyprint.HTML(string=html, url_fetcher=fetcher, base_url=None)
    css = weasyprint.CSS(string=Path(stylesheet).read_text(encoding="utf-8"), url_fetcher=fetcher)
    return document.write_pdf(stylesheets=[css])


def pdf_response(
    *, template: str, context: dict[str, Any], filename: str, request: Any = None
) -> HttpResponse:
    """A PDF of `template` rendered with `context`; `filename` is ours, never user input."""
    html = render_to_string(template, context, request=request)
    try:
        pdf = html_to_pdf(html)
    except PdfUnavailable:
        unavailable = render_to_string("courses/pdf_unavailable.html", context, request=request)
        return HttpResponse(unavailable, status=503)
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    return response
