"""Django in one file, one view rendering a small template (scenario 3 of bench/suite.py)."""

from __future__ import annotations

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.urls import path

PAGE = "<html><body><h1>{{ title }}</h1><ul>{% for item in items %}<li>{{ item }}</li>" \
       "{% endfor %}</ul></body></html>"

settings.configure(
    DEBUG=False,
    SECRET_KEY="uzerg-bench-only",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
    USE_TZ=True,
)
django.setup()
template = engines["django"].from_string(PAGE)


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse(template.render({"title": "Hello from Django", "items": ["a", "b", "c"]}))


urlpatterns = [path("", index)]

from django.core.wsgi import get_wsgi_application  # noqa: E402 - after settings

application = get_wsgi_application()
