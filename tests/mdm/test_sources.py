"""Registering source systems and mappings (command and admin), with history."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from mdm.models import SourceMapping, SourceSystem, SourceToken
from mdm.services.sources import source_token_authenticate

MAPPING = """
source = "shop"
source_name = "Web shop"
domain = "customer"
name = "customers"
[key]
field = "id"
[attributes]
given_name = "first"
"""


def register(*paths, token=False):
    out = StringIO()
    args = [str(p) for p in paths] + (["--token"] if token else [])
    call_command("register_source", *args, stdout=out)
    return out.getvalue()


def test_register_creates_the_source_and_mapping_and_a_token(tmp_path, db):
    path = tmp_path / "shop.toml"
    path.write_text(MAPPING)

    out = register(path, token=True)

    assert "registered mapping shop/customer/customers (default)" in out
    secret = out.split("token for shop: ")[1].strip()
    token = source_token_authenticate(secret)
    assert token is not None
    assert token.source_system.code == "shop"
    assert SourceToken.objects.get().secret_hash != secret  # stored hashed
    assert SourceSystem.objects.get().name == "Web shop"
    assert SourceMapping.objects.get().spec["attributes"] == {"given_name": "first"}


def test_reregistering_is_a_no_op_and_a_change_keeps_history(tmp_path, db):
    path = tmp_path / "shop.toml"
    path.write_text(MAPPING)
    register(path)
    register(path)
    assert SourceMapping.history.count() == 1

    path.write_text(MAPPING.replace('given_name = "first"', 'given_name = "firstname"'))
    out = register(path)

    assert "updated mapping shop/customer/customers" in out
    mapping = SourceMapping.objects.get()
    assert mapping.spec["attributes"] == {"given_name": "firstname"}
    old = mapping.history.earliest("history_id")
    assert old.spec["attributes"] == {"given_name": "first"}
    assert mapping.history.count() == 2


def test_a_new_default_mapping_demotes_the_old_one_with_history(tmp_path, db):
    first = tmp_path / "a.toml"
    first.write_text(MAPPING)
    second = tmp_path / "b.toml"
    second.write_text(MAPPING.replace('name = "customers"', 'name = "v2"'))
    register(first)

    register(second)

    defaults = dict(SourceMapping.objects.values_list("name", "is_default"))
    assert defaults == {"customers": False, "v2": True}
    demoted = SourceMapping.objects.get(name="customers")
    assert list(demoted.history.values_list("is_default", flat=True)) == [False, True]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (MAPPING.replace('given_name = "first"', 'shoe = "x"'), "'shoe' is not an attribute"),
        (MAPPING.replace('domain = "customer"', 'domain = "boat"'), "boat"),
        (MAPPING.replace('source = "shop"', ""), "'source' (the source system code) is required"),
        ("source = [", "not valid TOML"),
    ],
)
def test_bad_mapping_files_are_refused_and_nothing_is_stored(tmp_path, db, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)

    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        register(path)

    assert SourceMapping.objects.count() == 0
    assert SourceSystem.objects.count() == 0


def test_issue_and_revoke_token_commands(db):
    SourceSystem.objects.create(code="erp", name="ERP")
    out = StringIO()
    call_command("issue_token", "erp", stdout=out)
    secret = out.getvalue().strip()
    token = source_token_authenticate(secret)
    assert token is not None

    call_command("issue_token", "--revoke", token.prefix, stdout=StringIO())

    assert source_token_authenticate(secret) is None
    with pytest.raises(CommandError, match="unknown source system 'nope'"):
        call_command("issue_token", "nope")
