"""A small Flask application, served as operators serve theirs (`module = app:app`)."""

from __future__ import annotations

import os

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return "Hello from Flask\n"


@app.get("/hello/<name>")
def hello(name: str) -> object:
    return jsonify(
        greeting=f"Hello, {name}!",
        args=request.args.to_dict(),
        user_agent=request.headers.get("User-Agent", ""),
        pid=os.getpid(),
    )


@app.post("/api/items")
def create_item() -> tuple[object, int]:
    item = request.get_json(force=True)
    return jsonify(created=item, size=request.content_length), 201


@app.get("/fail")
def fail() -> str:
    raise RuntimeError("flask view failure")
