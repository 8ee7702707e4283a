"""Views of the minimal Django project: plain text, JSON with what Django saw, a POST form."""

from __future__ import annotations

import os

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse("Hello from Django\n", content_type="text/plain")


def item(request: HttpRequest, item_id: int) -> JsonResponse:
    return JsonResponse({
        "item": item_id,
        "path": request.path,
        "query": request.GET.dict(),
        "host": request.get_host(),
        "secure": request.is_secure(),
        "remote_addr": request.META.get("REMOTE_ADDR", ""),
        "pid": os.getpid(),
    })


@csrf_exempt
def submit(request: HttpRequest) -> JsonResponse:
    if request.method != "POST":
        return JsonResponse({"error": "POST only"}, status=405)
    return JsonResponse({"fields": request.POST.dict(), "length": len(request.body)})


def fail(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("django view failure")
