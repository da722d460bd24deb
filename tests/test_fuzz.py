"""Property: for any environment and any file contents, resolve() returns a Config or raises ConfigError."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from _devswitch.config import Config, resolve
from _devswitch.errors import ConfigError, visible
from _devswitch.settings import ENV_DISABLE, ENV_FLAGS, ENV_RC, NAMES, SETTINGS

KEYS = st.sampled_from([*NAMES, "profiles", "profile", "devcie", "<<", "1", ""])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30),
                    st.sampled_from(["gpu:0,1", "cuda", "4:2", "half", "auto", "summary", "x.json", "a:1,b:2"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(KEYS, inner, max_size=4)), max_leaves=12)
DOCUMENTS = st.dictionaries(KEYS, VALUES, max_size=6).map(lambda d: yaml.safe_dump(d, allow_unicode=True))
# raw text mutations of valid-looking YAML: quotes, brackets, anchors, tags, tabs, control characters
PIECES = st.sampled_from(["device: ", "precision: ", "threads: ", "profiles:\n  a:\n    ", "&x ", "*x ", "<<: *x\n",
                          "[", "]", "{", "}", ":", ",", "'", '"', "\t", "\n", "  ", "!!python/name:os.system ",
                          "!!binary ", "!!timestamp ", "? ", "- ", "---\n", "...\n", "%YAML 1.1\n", "\x00", "\x07",
                          "\ufeff", "с", "٤", "0o17", "0x1F", "1_000", "1:30", ".inf", "~", "null", "yes",
                          "\u2028", "\x85", "\u202e", "\r", '"\\e]0;x\\a"', '"\\0"', '"\\u2028"', '"\\x85"',
                          "report: ", "/abs.json", "../up.json", "# c"])
RAW = st.lists(PIECES, max_size=25).map("".join)
FILES = st.one_of(DOCUMENTS, RAW, st.text(max_size=200), st.binary(max_size=200))

ENV_NAMES = st.sampled_from([s.env for s in SETTINGS] + [ENV_FLAGS, ENV_RC, ENV_DISABLE, "DEVSWITCH_NOSUCH"])
ENV_VALUES = st.one_of(st.text(max_size=40), st.sampled_from(["gpu:0,1", "threads=4:2,device=gpu:0,1", "~/x",
                                                                "~nobody_x/y", "1", "on", "=", ",,", "a=b=c",
                                                                "x\x1b[2J.json", "a\u2028b", "/dev/null",
                                                                "/dev/null:" * 17, "device=gpu:0" + ",1" * 70]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(project_file=st.one_of(st.none(), FILES), user_file=st.one_of(st.none(), FILES),
       environ=st.dictionaries(ENV_NAMES, ENV_VALUES, max_size=4),
       explicit=st.dictionaries(st.sampled_from([*NAMES]), VALUES, max_size=3))
def test_resolve_returns_a_config_or_its_own_error(tmp_path, project_file, user_file, environ, explicit):
    home, project = tmp_path / "home", tmp_path / "home" / "proj"
    project.mkdir(parents=True, exist_ok=True)
    for folder, content in ((home, user_file), (project, project_file)):
        path = folder / ".devswitchrc"
        path.unlink(missing_ok=True)
        if content is not None:
            path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    try:
        result = resolve(environ, home, project, explicit)
    except ConfigError as error:
        assert error.exit_code == 2 and len(str(error)) < 2000
        assert visible(str(error)) == str(error)  # no control character reaches the terminal in a message
    else:
        assert isinstance(result, Config)


SAFE_TAGS = sorted(tag.replace("tag:yaml.org,2002:", "!!") for tag in yaml.SafeLoader.yaml_constructors
                   if tag and tag.startswith("tag:yaml.org,2002:"))
ODD_VALUES = ["", "x", "_", ".", "0x", "1:x", "[1]", "{a: 1}", "[[1]]", "2020-13-45", "[{a: 1, b: 2}]"]


def test_every_safe_tag_on_every_odd_value_is_a_config_error(tmp_path):
    """Each constructor of PyYAML's safe loader, given a value it cannot read, ends in a ConfigError."""
    assert {"!!bool", "!!float", "!!timestamp", "!!omap"} <= set(SAFE_TAGS)
    errors = 0
    for tag in SAFE_TAGS:
        for value in ODD_VALUES:
            (tmp_path / ".devswitchrc").write_text(f"device: {tag} {value}\n")
            try:
                resolve({}, tmp_path, tmp_path / "project", {})
            except ConfigError as error:
                errors += 1
                assert ".devswitchrc:1:" in str(error), (tag, value, str(error))
    assert errors == len(SAFE_TAGS) * len(ODD_VALUES)  # 'device' takes a string, so no tagged odd value is valid
