"""A small interpreter for the subset of Go's text/template that Ollama TEMPLATEs use, so tests
can render an exported Modelfile's TEMPLATE without Go. Semantics follow the text/template docs:
`{{-` / `-}}` trim the adjacent white space; `range $i, $m := .X`, `if`, `else`, `end`; pipelines
of `.Field`, `$var.Field`, string and integer literals, parentheses and the functions and, or,
not, eq, ne, index, len. Anything else raises, so a template beyond this subset fails loudly.
"""

from __future__ import annotations

import ast
import re

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(r'\s*(\(|\)|"(?:\\.|[^"\\])*"|:=|,|\$\w*(?:\.\w+)*|\.\w+(?:\.\w+)*|\.|-?\d+|\w+)')


def _lex(template: str) -> list[tuple[str, str]]:
    parts, pos, trim_next = [], 0, False
    for match in _ACTION.finditer(template):
        text = template[pos:match.start()]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        if match.group(1):
            text = text.rstrip(" \t\r\n")
        parts.append(("text", text))
        parts.append(("action", match.group(2).strip()))
        trim_next, pos = bool(match.group(3)), match.end()
    text = template[pos:]
    parts.append(("text", text.lstrip(" \t\r\n") if trim_next else text))
    return parts


def _parse(parts, i=0, stop=("end",)):
    """Nodes until one of `stop` (returned with its index)."""
    nodes = []
    while i < len(parts):
        kind, body = parts[i]
        i += 1
        if kind == "text":
            nodes.append(("text", body))
            continue
        word = body.split(None, 1)[0] if body else ""
        if word in stop:
            return nodes, i, word
        if word in ("if", "range"):
            inner, i, ended = _parse(parts, i, ("end", "else"))
            other = []
            if ended == "else":
                other, i, _ = _parse(parts, i, ("end",))
            nodes.append((word, body[len(word):].strip(), inner, other))
        else:
            nodes.append(("output", body))
    return nodes, i, None


def _truth(value) -> bool:
    return bool(value)  # Go: false, 0, nil, "" and empty collections are false


class _Expr:
    def __init__(self, text: str, scope: dict):
        self.tokens = [t for t in _TOKEN.findall(text)]
        self.pos, self.scope = 0, scope
        if "".join(self.tokens).replace(" ", "") != text.replace(" ", "").replace("\n", ""):
            raise ValueError(f"cannot tokenise {text!r}")

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self):
        token = self.peek()
        self.pos += 1
        return token

    def command(self):
        """A function call with its arguments, or a single operand."""
        token = self.peek()
        if token in ("and", "or", "not", "eq", "ne", "index", "len"):
            self.take()
            args = []
            while self.peek() not in (None, ")"):
                args.append(self.lazy_operand())
            return _call(token, args)
        value = self.operand()
        if self.peek() not in (None, ")"):
            raise ValueError(f"unexpected {self.peek()!r}")
        return value

    def lazy_operand(self):
        """An argument evaluated only when called: `and` / `or` stop at the first deciding one."""
        start = self.pos
        self.skip_operand()
        tokens = self.tokens[start:self.pos]
        return lambda: _Expr.from_tokens(tokens, self.scope).operand()

    def skip_operand(self):
        if self.take() == "(":
            depth = 1
            while depth:
                token = self.take()
                if token is None:
                    raise ValueError("unbalanced parenthesis")
                depth += {"(": 1, ")": -1}.get(token, 0)

    @classmethod
    def from_tokens(cls, tokens, scope):
        expr = cls.__new__(cls)
        expr.tokens, expr.pos, expr.scope = tokens, 0, scope
        return expr

    def operand(self):
        token = self.take()
        if token == "(":
            value = self.command()
            if self.take() != ")":
                raise ValueError("expected )")
            return value
        if token.startswith('"'):
            return ast.literal_eval(token)  # Go and Python agree on the escapes used here
        if re.fullmatch(r"-?\d+", token):
            return int(token)
        if token.startswith("$"):
            name, *fields = token.split(".")
            value = self.scope[name]
        elif token.startswith("."):
            value, fields = self.scope["."], [f for f in token.split(".")[1:] if f]
        else:
            raise ValueError(f"unknown identifier {token!r}")
        for field in fields:
            value = value[field]
        return value


def _call(name, args):
    if name == "and":
        value = True
        for arg in args:
            value = arg()
            if not _truth(value):
                return value
        return value
    if name == "or":
        value = False
        for arg in args:
            value = arg()
            if _truth(value):
                return value
        return value
    values = [arg() for arg in args]
    if name == "not":
        return not _truth(values[0])
    if name == "eq":
        return any(values[0] == v for v in values[1:])
    if name == "ne":
        return values[0] != values[1]
    if name == "index":
        value = values[0]
        for key in values[1:]:
            value = value[key]
        return value
    if name == "len":
        return len(values[0])
    raise ValueError(name)


def _run(nodes, scope, out):
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "output":
            out.append(str(_Expr(node[1], scope).command()))
        elif node[0] == "if":
            branch = node[2] if _truth(_Expr(node[1], scope).command()) else node[3]
            _run(branch, scope, out)
        elif node[0] == "range":
            match = re.fullmatch(r"(?:(\$\w+)\s*,\s*)?(\$\w+)\s*:=\s*(.+)", node[1], re.S)
            if match:
                index_var, value_var, pipeline = match.groups()
            else:
                index_var, value_var, pipeline = None, None, node[1]
            items = _Expr(pipeline, scope).command()
            if not items:
                _run(node[3], scope, out)
            for i, item in enumerate(items):
                inner = dict(scope)
                if value_var:
                    inner[value_var] = item
                    if index_var:
                        inner[index_var] = i
                else:
                    inner["."] = item
                _run(node[2], inner, out)


def render(template: str, data: dict) -> str:
    nodes, _, _ = _parse(_lex(template))
    out: list[str] = []
    _run(nodes, {".": data, "$": data}, out)
    return "".join(out)


def ollama_messages(messages: list[dict]) -> dict:
    """Ollama's template data for a chat: `.Messages` of {Role, Content}."""
    return {"Messages": [{"Role": m["role"], "Content": m["content"]} for m in messages]}
