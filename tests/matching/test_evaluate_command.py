from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from mdm.models import SourceRecord
from mdm.services.golden import golden_records_apply_clusters


@pytest.fixture
def hub(api):
    people = [{"source_key": k, "given_name": k} for k in "ABCD"]
    api.post("/api/v1/customer/records", {"records": people}, format="json")
    ids = dict(SourceRecord.objects.values_list("source_key", "id"))
    # The hub says A=B=C and D alone.
    clusters = {ids["A"]: 1, ids["B"]: 1, ids["C"]: 1, ids["D"]: 2}
    golden_records_apply_clusters(domain="customer", clusters=clusters)
    return ids


def evaluate(tmp_path, text):
    truth = tmp_path / "truth.csv"
    truth.write_text(text)
    out = StringIO()
    call_command("evaluate_matching", "customer", "--truth", str(truth), stdout=out)
    return out.getvalue()


def test_prints_pairwise_and_bcubed_scores(tmp_path, hub):
    # The truth: A=B, C=D.
    out = evaluate(
        tmp_path,
        "source,domain,source_key,entity_id\n"
        "crm,customer,A,1\ncrm,customer,B,1\ncrm,customer,C,2\ncrm,customer,D,2\n"
        "crm,supplier,X,9\n",
    )

    # Predicted pairs AB, AC, BC; true pairs AB, CD; one correct.
    assert "customer: 4 records evaluated" in out
    assert "precision 0.3333  recall 0.5000  F1 0.4000" in out
    assert "(predicted pairs 3, true pairs 2, correct 1)" in out
    assert "B-cubed" in out


def test_a_truth_file_without_the_columns_is_refused(tmp_path, hub):
    with pytest.raises(CommandError, match="missing column"):
        evaluate(tmp_path, "key,cluster\nA,1\n")


def test_a_blank_value_is_reported_with_its_line(tmp_path, hub):
    with pytest.raises(CommandError, match=r"truth\.csv line 3"):
        evaluate(tmp_path, "source,source_key,entity_id\ncrm,A,1\ncrm,,1\n")
