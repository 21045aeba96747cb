"""The "Plan a study" pages: coordinators only, the readers x cases table over HTTP (the same numbers as
``readerstudy.stats.power.or_study_plan``), and plain words when a pilot cannot give components."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.urls import reverse

from readerstudy.analysis import study_analysis
from readerstudy.planning import cell_text
from readerstudy.stats.power import ORComponents, or_components, or_study_plan
from tests.factories import StudyFactory, UserFactory, read_study

pytestmark = pytest.mark.django_db

# The Van Dyke modality-0 components (OR-DBM MRMC 2.51 printout: Var(error) and Cov2 of treatment 1; the reader
# variance from its MS(R) = 0.00308263 as MS(R) - Var + Cov2), typed in.
TYPED_IN = {"pilot_cases": "114", "var_reader": "0.00255249", "var_error": "0.0010141", "cov2": "0.00048396"}
GRID = {
    "readers_from": "3",
    "readers_to": "9",
    "readers_step": "3",
    "cases_from": "20",
    "cases_to": "100",
    "cases_step": "40",
}


class PlanTable(HTMLParser):
    """The plan table of a page: its column heads and, per row, (readers, [(cell text, classes)], cases needed)."""

    def __init__(self):
        super().__init__()
        self.heads: list[str] = []
        self.rows: list[tuple[str, list[tuple[str, set[str]]], str]] = []
        self._in_table = self._in_head = False
        self._cell: list[str] | None = None
        self._classes: set[str] = set()
        self._row: list = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and "plan-table" in (attrs.get("class") or ""):
            self._in_table = True
        elif self._in_table and tag == "thead":
            self._in_head = True
        elif self._in_table and tag in ("td", "th"):
            self._cell, self._classes = [], set((attrs.get("class") or "").split())
        elif self._in_table and tag == "tr":
            self._row = []

    def handle_endtag(self, tag):
        if not self._in_table:
            return
        if tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell).strip()
            if self._in_head:
                self.heads.append(text)
            else:
                self._row.append((text, self._classes))
            self._cell = None
        elif tag == "thead":
            self._in_head = False
        elif tag == "tr" and self._row:
            self.rows.append((self._row[0][0], self._row[1:-1], self._row[-1][0]))
        elif tag == "table":
            self._in_table = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def plan_table(response) -> PlanTable:
    parser = PlanTable()
    parser.feed(response.content.decode())
    return parser


@pytest.fixture
def coordinator_client(client):
    client.force_login(UserFactory(role="coordinator"))
    return client


@pytest.fixture
def pilot():
    """An open study of 8 real and 8 synthetic cases read by three readers."""
    study = StudyFactory(real=8, synthetic=8)
    read_study(study, [UserFactory(role="reader") for _ in range(3)])
    return study


def test_readers_are_refused_and_visitors_sent_to_log_in(client, pilot):
    urls = [reverse("study_plan", args=[pilot.pk]), reverse("plan")]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url
    client.force_login(UserFactory(role="reader"))
    for url in urls:
        assert client.get(url).status_code == 403, url
    for role in ("coordinator", "admin"):
        client.force_login(UserFactory(role=role))
        for url in urls:
            assert client.get(url).status_code == 200, (role, url)
    assert client.get(reverse("study_plan", args=[pilot.pk + 1000])).status_code == 404


def test_the_study_page_and_the_dashboard_link_to_the_plan(coordinator_client, pilot):
    url = reverse("study_plan", args=[pilot.pk])
    for page in ("study_detail", "study_dashboard"):
        assert f'href="{url}"' in coordinator_client.get(reverse(page, args=[pilot.pk])).content.decode(), page
    assert f'href="{reverse("plan")}"' in coordinator_client.get(reverse("study_list")).content.decode()


def test_the_table_is_the_plan_of_the_pilots_components(coordinator_client, pilot):
    response = coordinator_client.get(
        reverse("study_plan", args=[pilot.pk]), {**GRID, "target": "power", "expected": "0.7", "power": "0.8"}
    )
    assert response.status_code == 200
    components = or_components(study_analysis(study=pilot).report.mrmc.auc[0])
    assert (components.n_cases, response.context["pilot"].readers) == (16, 3)
    expected = or_study_plan(components, [3, 6, 9], [20, 60, 100], effect=0.7 - 0.5, goal=0.8)
    table = plan_table(response)
    assert table.heads == ["Readers", "20", "60", "100", "Cases needed"]
    assert [row[0] for row in table.rows] == ["3", "6", "9"]
    for (readers, cells, needed), designs, cases_needed in zip(
        table.rows, expected.designs, expected.cases_needed, strict=True
    ):
        assert [text for text, _ in cells] == [cell_text(expected, d) for d in designs], readers
        assert [("meets" in classes) for _, classes in cells] == [d.power >= 0.8 for d in designs], readers
        assert needed == (str(cases_needed) if cases_needed else f"over {expected.max_cases}")
    highlighted = [
        (row[0], table.heads[1 + index]) for row in table.rows for index, (_, c) in enumerate(row[1]) if "smallest" in c
    ]
    if expected.smallest is None:
        assert highlighted == [] and "No design in this table meets the target" in response.content.decode()
    else:
        assert highlighted == [(str(expected.smallest.readers), str(expected.smallest.cases))]
    body = response.content.decode()
    assert "rough estimates" in body  # 3 readers and 16 cases: said to be a sketch
    assert "Try other values of these components" in body


def test_the_precision_target_tabulates_half_widths(coordinator_client, pilot):
    response = coordinator_client.get(
        reverse("study_plan", args=[pilot.pk]), {**GRID, "target": "half_width", "half_width": "0.1"}
    )
    table = plan_table(response)
    assert table.rows and all(text.startswith("±") for _, cells, _ in table.rows for text, _ in cells)


@pytest.mark.parametrize(("figure", "target"), [("accuracy", "power"), ("sensitivity", "half_width")])
def test_other_figures_of_merit_use_their_own_components(coordinator_client, pilot, figure, target):
    response = coordinator_client.get(
        reverse("study_plan", args=[pilot.pk]), {**GRID, "figure": figure, "target": target, "expected": "0.7"}
    )
    result = getattr(study_analysis(study=pilot).report.mrmc, figure)[0]
    shown, expected = response.context["pilot"].components, or_components(result)
    fields = ("n_cases", "var_reader", "var_error", "cov2")
    assert [getattr(shown, name) for name in fields] == [getattr(expected, name) for name in fields]
    assert response.context["plan"] is not None and plan_table(response).rows


def test_a_pilot_with_one_reader_says_it_cannot_give_components(coordinator_client):
    study = StudyFactory(real=4, synthetic=4)
    read_study(study, [UserFactory(role="reader")])
    response = coordinator_client.get(reverse("study_plan", args=[study.pk]))
    body = response.content.decode()
    assert response.status_code == 200 and response.context["plan"] is None
    assert "No components from this study yet." in body and "This pilot has 1 reader" in body
    assert 'class="table plan-table"' not in body
    assert f'href="{reverse("plan")}"' in body


def test_a_study_without_readings_says_so(coordinator_client):
    study = StudyFactory()
    body = coordinator_client.get(reverse("study_plan", args=[study.pk])).content.decode()
    assert "No readings yet" in body and 'class="table plan-table"' not in body


def test_typed_in_components_give_the_same_table(coordinator_client):
    assert coordinator_client.get(reverse("plan")).context["plan"] is None  # nothing typed in yet: no table
    response = coordinator_client.get(reverse("plan"), {**TYPED_IN, **GRID, "expected": "0.65"})
    components = ORComponents(n_cases=114, var_reader=0.00255249, var_error=0.0010141, cov2=0.00048396)
    expected = or_study_plan(components, [3, 6, 9], [20, 60, 100], effect=0.65 - 0.5, goal=0.8)
    table = plan_table(response)
    assert [[text for text, _ in cells] for _, cells, _ in table.rows] == [
        [cell_text(expected, d) for d in row] for row in expected.designs
    ]
    assert [needed for _, _, needed in table.rows] == ["68", "28", "25"]
    # 3 x 100 = 300 readings is the fewest that reach 80% (9 x 20 reach 72.9%, 6 x 60 take 360 readings).
    highlighted = [
        (row[0], table.heads[1 + i]) for row in table.rows for i, (_, c) in enumerate(row[1]) if "smallest" in c
    ]
    assert highlighted == [("3", "100")] == [(str(expected.smallest.readers), str(expected.smallest.cases))]
    assert "<strong>3 readers × 100 cases</strong>" in response.content.decode()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"figure": "sensitivity", "target": "power"}, "has no chance level on its own"),
        ({"expected": "0.5"}, "is chance itself"),
        ({"readers_from": "2", "readers_to": "100", "readers_step": "1"}, "At most 30 numbers of readers"),
        ({"cases_from": "300", "cases_to": "100"}, "The last number of cases is below the first"),
        ({"cov2": "0.01"}, "Cov2 ≤ Var"),
        ({"var_error": "0"}, "A variance is positive"),
    ],
)
def test_impossible_requests_are_refused_with_the_reason(coordinator_client, query, message):
    response = coordinator_client.get(reverse("plan"), {**TYPED_IN, **query})
    assert response.status_code == 200 and response.context["plan"] is None
    assert message in response.content.decode()
