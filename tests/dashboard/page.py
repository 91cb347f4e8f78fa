"""Reading a rendered page in tests: elements with attributes, and their text."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

_VOID = {"meta", "link", "input", "br", "img", "hr", "rect", "line", "path", "circle"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""
    children: list[Element] = field(default_factory=list)

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Element]:
        found = []
        for child in self.children:
            names = {k.rstrip("_").replace("_", "-"): v for k, v in attrs.items()}
            if (tag is None or child.tag == tag) and all(
                    child.attrs.get(k) == v for k, v in names.items()):
                found.append(child)
            found.extend(child.find_all(tag, **attrs))
        return found

    def having(self, attribute: str) -> list[Element]:
        found = []
        for child in self.children:
            if attribute in child.attrs:
                found.append(child)
            found.extend(child.having(attribute))
        return found

    @property
    def all_text(self) -> str:
        return self.text + "".join(c.all_text for c in self.children)


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        if tag not in _VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        for index in range(len(self.stack) - 1, 0, -1):
            if self.stack[index].tag == tag:
                if index != len(self.stack) - 1:
                    raise AssertionError(f"unclosed <{self.stack[-1].tag}> inside <{tag}>")
                del self.stack[index:]
                return
        raise AssertionError(f"stray </{tag}>")

    def handle_data(self, data: str) -> None:
        target = self.stack[-1]
        if target.children:
            target.children.append(Element("#text", {}, data))
        else:
            target.text += data


def parse(html: str) -> Element:
    """The element tree; raises AssertionError on unbalanced tags."""
    parser = _Parser()
    parser.feed(html)
    parser.close()
    if len(parser.stack) != 1:
        raise AssertionError(f"unclosed <{parser.stack[-1].tag}> at the end")
    return parser.root
