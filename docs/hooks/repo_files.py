"""MkDocs hook: pages may link files outside docs/ (benchmark results, configs) with plain relative links.

On a code host such a link already works. For the site, each linked file outside docs/ is copied in under
`_repo/<its path in the repository>` (Markdown files become pages, whose own links are followed the same way), and
the link is rewritten to that copy. A link to a file that does not exist is left as it is, so MkDocs reports it and
`mkdocs build --strict` fails.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mkdocs.structure.files import File, InclusionLevel

LINK = re.compile(r"(\]\()([^)\s]+)(\))")
PREFIX = "_repo"


def _targets(markdown: str):
    for match in LINK.finditer(markdown):
        target = match.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
            continue
        yield target.split("#", 1)[0]


def _site_uri(real: Path, docs: Path, repo: Path) -> str | None:
    """Where a real file lives in the site: its place under docs/, or _repo/<path>; None outside the repository."""
    if real.is_relative_to(docs):
        return real.relative_to(docs).as_posix()
    if real.is_relative_to(repo):
        return f"{PREFIX}/{real.relative_to(repo).as_posix()}"
    return None


def _real_path(page_uri: str, docs: Path, repo: Path) -> Path:
    if page_uri.startswith(PREFIX + "/"):
        return repo / page_uri[len(PREFIX) + 1 :]
    return docs / page_uri


def on_files(files, config):
    docs = Path(config["docs_dir"]).resolve()
    repo = docs.parent
    queue = [file for file in files if file.src_uri.endswith(".md")]
    known = {file.src_uri for file in files}
    while queue:
        file = queue.pop()
        page = _real_path(file.src_uri, docs, repo)
        for target in _targets(page.read_text(encoding="utf-8")):
            real = (page.parent / target).resolve()
            uri = _site_uri(real, docs, repo)
            if uri is None or not uri.startswith(PREFIX + "/") or uri in known or not real.is_file():
                continue
            added = File.generated(config, uri, abs_src_path=str(real), inclusion=InclusionLevel.NOT_IN_NAV)
            files.append(added)
            known.add(uri)
            if uri.endswith(".md"):
                queue.append(added)
    return files


def on_page_markdown(markdown, page, config, files):
    docs = Path(config["docs_dir"]).resolve()
    repo = docs.parent
    here = _real_path(page.file.src_uri, docs, repo)
    site_dir = Path(page.file.src_uri).parent

    def rewrite(match):
        target = match.group(2)
        path, _, anchor = target.partition("#")
        if not path or re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("/"):
            return match.group(0)
        real = (here.parent / path).resolve()
        uri = _site_uri(real, docs, repo)
        if uri is None or not real.exists():
            return match.group(0)  # left for MkDocs to report
        new = os.path.relpath(uri, site_dir.as_posix() or ".").replace(os.sep, "/")
        return f"{match.group(1)}{new}{'#' + anchor if anchor else ''}{match.group(3)}"

    return LINK.sub(rewrite, markdown)
