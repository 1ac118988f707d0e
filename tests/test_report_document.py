"""What report.md says: the machine, the pooling trade-off, parity, latency and efficiency with
their flags explained, top confusions, failures; and that no plugin text becomes Markdown."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.report.confusions import top_confusions
from harness.report.document import report_document
from harness.report.frames import build_tables
from harness.report.markdown import escape_markdown, render_markdown, render_table, render_text
from harness.report.synthetic import (
    cell_record,
    end_record,
    environment,
    journal_records,
    machine_load,
    model_record,
    run_record,
)

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer"]
CIFAR_CLASSES += ["dog", "frog", "horse", "ship", "truck"]


def markdown_of(records) -> str:
    tables = build_tables(records, Path("journal.jsonl"))
    return render_markdown(report_document(tables, plots=[]))


def test_top_confusions_are_the_largest_off_diagonal_counts_in_order():
    matrix = [[50, 2, 7], [13, 40, 0], [0, 1, 60]]
    found = [str(c) for c in top_confusions(matrix, ["a", "b", "c"], limit=3)]
    assert found == ["b predicted as a: 13", "a predicted as c: 7", "a predicted as b: 2"]


def test_a_perfect_matrix_has_no_confusions():
    assert top_confusions([[5, 0], [0, 5]], ["x", "y"]) == []


def test_report_shows_the_nopool_to_pool_dense_weight_ratio():
    markdown = markdown_of(journal_records(datasets=("mnist",)))
    pool = model_record(variant="pool")["counts"]["params_dense"]
    nopool = model_record(variant="nopool")["counts"]["params_dense"]
    assert f"{nopool:,} weights against {pool:,} with pooling" in markdown
    assert f"nopool/pool = {nopool / pool:.1f}x" in markdown


def test_report_lists_top_confusions_with_class_names():
    model = model_record("cifar10", "pool")
    model["class_names"] = CIFAR_CLASSES
    records = [run_record(), model, cell_record("cifar10", "pool"), end_record()]
    markdown = markdown_of(records)
    assert "book_cnn pool: dog predicted as cat: 13; horse predicted as truck: 4" in markdown


def table_rows(markdown: str, first_header: str, second_header: str) -> list[list[str]]:
    """The body cells of the first table whose first two headers are these."""
    lines = markdown.splitlines()
    start = next(
        i
        for i, line in enumerate(lines)
        if [c.strip() for c in line.strip("|").split("|")][:2] == [first_header, second_header]
    )
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split(" | ")])
    return rows


def test_report_has_a_latency_row_per_cell_and_batch_size_with_its_efficiency():
    records = journal_records(datasets=("mnist", "cifar10"), batch_sizes=(1, 32))
    markdown = markdown_of(records)
    assert "## mnist" in markdown and "## cifar10" in markdown
    header = "| model    | variant | backend     | device | batch | p50 ms | p99 ms | CV "
    assert header in markdown
    tables = build_tables(records, Path("journal.jsonl"))
    row = tables.summary.query(
        "dataset == 'mnist' and variant == 'pool' and backend == 'keras' and batch_size == 32"
    ).iloc[0]
    mnist = markdown.split("## mnist")[1].split("Latency per call")[1]
    found = [
        r for r in table_rows(mnist, "model", "variant") if r[:3] == ["book_cnn", "pool", "keras"]
    ]
    assert [r[4] for r in found] == ["1", "32"]
    assert found[1][9] == f"{row.achieved_gflops:#.3g}"
    assert found[1][10] == f"{100 * row.peak_fraction:.0f}%"
    assert "2 x MACs per image x batch size / p50" in markdown
    assert "fp32 GEMM peak measured on the machine (100.0 GFLOP/s)" in markdown


def test_report_marks_unstable_latency_and_explains_it_under_the_table():
    cell = cell_record()
    cell["batches"][0]["stats"]["unstable"] = True
    markdown = markdown_of([run_record(), model_record(), cell])
    latency = markdown.split("Latency per call")[1]
    rows = table_rows(latency, "model", "variant")
    assert [r[4] for r in rows] == ["1", "8"]
    assert [r[11] for r in rows] == ["unstable", ""]
    note = latency.split("\n\n")[2]
    assert "unstable: the latency's coefficient of variation (std / mean) is 10% or more" in note


def test_a_stable_report_does_not_explain_instability():
    assert "coefficient of variation" not in markdown_of(journal_records(datasets=("mnist",)))


def test_report_flags_a_parity_failure_and_says_what_it_means():
    cell = cell_record()
    cell["parity_ok"] = False
    cell["parity_top1_agreement"] = 0.95
    markdown = markdown_of([run_record(), model_record(), cell])
    parity = markdown.split("Accuracy and parity with the Keras reference:")[1]
    assert table_rows(parity, "model", "variant")[0][4:8] == ["90.00%", "95.00%", "1e-05", "FAILED"]
    note = parity.split("\n\n")[2]
    assert "within the tolerance the backend declares" in note
    assert "FAILED: this backend computes something other than the reference model" in note
    assert "FAILED:" not in markdown_of(journal_records(datasets=("mnist",)))


def test_parity_table_gives_the_size_of_the_file_each_backend_ran():
    keras = cell_record(backend="keras")
    onnx = cell_record(backend="onnxruntime")
    onnx["describe"] = {**onnx["describe"], "onnx_bytes": 3_300_000}
    markdown = markdown_of([run_record(), model_record(), keras, onnx])
    parity = markdown.split("Accuracy and parity with the Keras reference:")[1]
    files = {row[2]: row[8] for row in table_rows(parity, "model", "variant")}
    keras_mb = f"{model_record()['keras_bytes'] / 1e6:,.1f} MB"
    assert files == {"keras": keras_mb, "onnxruntime": "3.3 MB"}


def test_report_lists_cells_that_did_not_measure_with_the_first_line_of_the_error():
    records = [
        run_record(),
        model_record(),
        cell_record(device="gpu", status="timeout", error="worker timed out after 300 s\ntrace"),
    ]
    markdown = markdown_of(records)
    assert "## Cells that did not measure" in markdown
    assert "| timeout | worker timed out after 300 s |" in markdown.replace("  ", "")
    assert "trace" not in markdown


def test_report_opens_with_the_machine_it_measured_on():
    env = environment()
    env["cpu"] = {
        "vendor": "GenuineIntel",
        "family": 6,
        "model": 207,
        "stepping": 2,
        "isa": ["avx", "avx2", "avx512f", "fma"],
        "virtualized": True,
        "hypervisor": "KVM",
        "caches": {"L1d": 49152, "L2": 2097152, "L3": None},
    }
    env["gpus"] = [{"name": "NVIDIA H200", "driver": "570", "cuda": "12.8"}]
    markdown = markdown_of(journal_records(env=env))
    header = markdown.split("## mnist")[0]
    assert "## Where it was measured" in header
    cpu = "CPU: Synthetic CPU (GenuineIntel family 6 model 207 stepping 2, virtual machine (KVM))"
    assert cpu + "; 2 cores, 2 threads; RAM 8.0 GiB" in header
    assert "ISA features: avx, avx2, avx512f, fma" in header
    assert "caches: L1d 48 KiB, L2 2 MiB\n" in header
    assert "GPU: NVIDIA H200" in header
    assert "fp32 GEMM peak: 100.0 GFLOP/s" in header
    assert "libraries: keras 3.15.0, onnxruntime 1.32.0, tensorflow 2.21.0" in header
    assert "suite: synthetic, started 2025-01-01T00:00:00+00:00" in header
    assert "at commit 0123456789abcdef" in header
    assert "time per phase: train 10.0 s" in header


def test_a_run_from_before_the_cpu_fingerprint_says_the_isa_is_not_recorded():
    header = markdown_of(journal_records()).split("## mnist")[0]
    assert "CPU: Synthetic CPU; 2 cores, 2 threads; RAM 8.0 GiB" in header
    assert "ISA features: not recorded" in header


def test_report_says_what_others_took_of_the_machine_in_each_phase():
    header = markdown_of(journal_records()).split("## mnist")[0]
    assert (
        "machine load while measuring: latency phase 2.0% of the CPUs to other processes, 0.0% "
        "stolen by the hypervisor; trial phase 1.0% of the CPUs to other processes, 0.0% stolen"
    ) in header


@pytest.mark.parametrize(
    ("load", "line"),
    [
        (None, "machine load while measuring: not recorded"),
        (
            machine_load(latency=None, trials=None, steal=None),
            "latency phase unknown (no /proc/stat); trial phase unknown",
        ),
        (
            {"latency": machine_load()["latency"], "trials": {"seconds": 0.0}},
            "by the hypervisor; trial phase not measured",
        ),
    ],
)
def test_the_machine_load_line_says_what_was_not_measured(load, line):
    records = journal_records()
    records[-1]["machine_load"] = load
    if load is None:
        del records[-1]["machine_load"]
    assert line in markdown_of(records).split("## mnist")[0]


def test_merged_runs_each_get_their_machine():
    records = journal_records("run-a") + journal_records("run-b", env=environment("Other CPU"))
    header = markdown_of(records).split("## mnist")[0]
    assert "### Run run-a" in header and "### Run run-b" in header
    assert "CPU: Other CPU;" in header.split("### Run run-b")[1]


def shard_records(run_id: str, index: int, count: int) -> list[dict]:
    records = journal_records(run_id, datasets=("mnist",), variants=("pool",))
    records[0]["shard"] = {"index": index, "count": count}
    return records


def test_a_shards_report_says_which_shard_it_holds():
    header = markdown_of(shard_records("run-s", 2, 3)).split("## mnist")[0]
    assert "This run is shard 2 of 3 of suite synthetic (harness run --shard 2/3)" in header
    assert "suite: synthetic, shard 2 of 3, started" in header


def test_a_merge_of_shards_names_them_and_the_shards_it_lacks():
    records = shard_records("run-3", 3, 3) + shard_records("run-1", 1, 3)
    header = markdown_of(records).split("## mnist")[0]
    assert "A merge of shards 1/3, 3/3 of suite synthetic; shard 2/3 is missing, so its" in header
    assert "suite: synthetic, shard 3 of 3, started" in header.split("### Run run-3")[1]
    whole = markdown_of(shard_records("run-1", 1, 2) + shard_records("run-2", 2, 2))
    assert "A merge of shards 1/2, 2/2 of suite synthetic: the whole suite." in whole


def test_a_whole_runs_report_says_nothing_of_shards():
    assert "shard" not in markdown_of(journal_records())


EVIL = (
    "![x](http://127.0.0.1:9/x.png) <img src=x> *bold* _under_ `code` "
    "[link](http://127.0.0.1:9) | ~~s~~"
)


def test_every_plugin_controlled_text_is_escaped_in_markdown():
    markdown_it = pytest.importorskip("markdown_it")
    model = model_record(model="evil_cnn")
    model["class_names"] = ["<b>zero</b>", *"123", "[four](http://127.0.0.1:9)", *"56789"]
    model["confusion"][4][0] = 9
    records = [
        run_record(),
        model,
        cell_record(model="evil_cnn", backend="*star*"),
        cell_record(model="evil_cnn", device="gpu", status="failed", error=EVIL + "\ntrace"),
    ]
    records[0]["suite"]["name"] = "# suite"
    markdown = markdown_of(records)
    rendered = markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"])
    html = rendered.render(markdown)
    for tag in ("<img", "<a ", "<em>", "<strong>", "<code>", "<b>", "<s>", "<del>"):
        assert tag not in html, tag
    assert html.count("<h1>") == 1
    assert "<td>" + html_escape(EVIL) + "</td>" in html
    assert html_escape("[four](http://127.0.0.1:9) predicted as <b>zero</b>: 9") in html
    assert "evil_cnn" in markdown, "an underscore inside a word needs no escape"


def html_escape(text: str) -> str:
    import html

    return html.escape(text, quote=False)


@pytest.mark.parametrize(
    "text",
    ["1. first", "- item", "+ item", "---", "===", "# heading", "> quote", "2) x", "a\\", "&amp;"],
)
def test_escaped_text_renders_as_itself(text):
    markdown_it = pytest.importorskip("markdown_it")
    html = markdown_it.MarkdownIt("commonmark").render(escape_markdown(text))
    assert html == f"<p>{html_escape(text)}</p>\n"


def test_tables_are_aligned_and_escape_pipes():
    table = render_table(("a", "long header"), (("x|y", "1"),))
    lines = table.splitlines()
    assert len({len(line) for line in lines}) == 1
    assert "x\\|y" in table


def test_terminal_text_is_not_escaped():
    from harness.report.document import Bullets, Table

    text = render_text([Bullets(("a_b *c*",)), Table(("h",), (("x|y",),))])
    assert "- a_b *c*" in text and "x\\|y" in text


def test_terminal_text_has_no_heading_marks():
    tables = build_tables(journal_records(datasets=("mnist",)), Path("journal.jsonl"))
    text = render_text(report_document(tables, plots=[]))
    assert "\n#" not in text and not text.startswith("#")
    assert "Benchmark report\n================" in text
