"""Flask, one route rendering a small Jinja template (scenario 3 of bench/suite.py)."""

from __future__ import annotations

from flask import Flask, render_template
from jinja2 import DictLoader

PAGE = "<html><body><h1>{{ title }}</h1><ul>{% for item in items %}<li>{{ item }}</li>" \
       "{% endfor %}</ul></body></html>"

app = Flask(__name__)
app.jinja_loader = DictLoader({"page.html": PAGE})  # compiled once, cached by Jinja


@app.get("/")
def index() -> str:
    return render_template("page.html", title="Hello from Flask", items=["a", "b", "c"])


application = app
