#!/usr/bin/env python3
"""Converts gitleaks.toml (the gitleaks rule set, kept unmodified) to gitleaks.json, which the
redaction loads with serde_json (no TOML parser in the Lambda binaries).

Run from this directory after replacing gitleaks.toml with a newer upstream copy (keep the
header naming the commit):  python3 convert-gitleaks.py
The conversion is faithful: the parsed TOML document is written as JSON, with a `_source` entry
repeating the header. A unit test checks that both files hold the same rule ids.
"""
import json
import pathlib
import tomllib

here = pathlib.Path(__file__).parent
text = (here / "gitleaks.toml").read_text()
header = [line[2:] for line in text.splitlines() if line.startswith("# ")][:4]
config = tomllib.loads(text)
document = {"_source": " ".join(header), **config}
(here / "gitleaks.json").write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
print(f"{len(config['rules'])} rules written to gitleaks.json")
