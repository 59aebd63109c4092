"""Web pages under /ui: server-rendered (Jinja2) views of a project's skills, scans, mixtures
and verifications, with charts drawn in the browser from the API's JSON (uPlot, vendored
in static/vendor). See `install` and CONTRIBUTING.md ("Adding a /ui page")."""

from service.api.ui.app import install

__all__ = ["install"]
