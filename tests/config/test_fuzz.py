"""Any sweep file or --set value either loads or fails with one line naming the file: Hypothesis fuzzing."""

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grokjax.cli import main
from grokjax.config.sweep_file import TABLES, ConfigError, load
from grokjax.engine import runs_table

KEYS = [f"{table}.{field}" for table, cls in TABLES.items() for field in cls.__dataclass_fields__]
NAMES = st.one_of(st.sampled_from([k.split(".")[1] for k in KEYS]), st.text(min_size=1, max_size=12))
SCALARS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.booleans(),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(NAMES, inner, max_size=3),
                      max_leaves=6)
TABLE = st.dictionaries(NAMES, VALUES, max_size=4)
DOCUMENTS = st.dictionaries(
    st.one_of(st.sampled_from([*TABLES, "sweep", "name"]), st.text(min_size=1, max_size=8)),
    st.one_of(TABLE, SCALARS),
    max_size=5,
)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def loads_or_refuses(path, overrides=()) -> None:
    try:
        runs_table.expand(load(path, list(overrides)))
    except ConfigError as err:
        message = str(err)
        assert "\n" not in message and message.startswith(str(path)), message


@FAST
@given(document=DOCUMENTS)
def test_random_sweep_files_load_or_give_one_line(tmp_path, document):
    path = tmp_path / "fuzz.toml"
    try:
        path.write_text(tomli_w.dumps(document), encoding="utf-8")
    except (TypeError, ValueError):  # not representable in TOML (e.g. a table inside an array)
        return
    loads_or_refuses(path)


@FAST
@given(text=st.text(max_size=200))
def test_random_bytes_as_a_sweep_file(tmp_path, text):
    path = tmp_path / "fuzz.toml"
    path.write_text(text, encoding="utf-8")
    loads_or_refuses(path)


@FAST
@given(key=st.one_of(st.sampled_from([*KEYS, "name", *(f"sweep.{k}" for k in KEYS)]), st.text(max_size=20)),
       value=st.one_of(st.text(max_size=20), SCALARS.map(lambda v: tomli_w.dumps({"v": v})[4:].strip())))
def test_random_overrides_load_or_give_one_line(sweep_file, key, value):
    loads_or_refuses(sweep_file(), [f"{key}={value}"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(KEYS), value=st.one_of(st.integers(min_value=-(10**30), max_value=10**30),
                                                  st.sampled_from(["nan", "-inf", "''", "[]", "{}", "true", "é"])))
def test_the_cli_refuses_bad_values_with_exit_2_and_writes_nothing(sweep_file, tmp_path, capsys, key, value):
    path, out = sweep_file(), tmp_path / "never"
    try:
        runs_table.expand(load(path, [f"{key}={value}"]))
        return  # a value that loads is not this test's business (it would train)
    except ConfigError:
        pass
    assert main(["sweep", str(path), "--out", str(out), "--set", f"{key}={value}", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("grokjax: error: ") and "Traceback" not in err
    assert not out.exists()
