"""``nirdeploy report RUN.json|SWEEP_DIR -o REPORT.html``: HTML + Markdown report with plots."""

from __future__ import annotations

import os

from toolchain.errors import NirDeployError
from toolchain.ir.atomic import check_output_path


def cmd_report(args) -> int:
    from toolchain.reports.report import build_report, print_summary

    out = args.output
    stem, ext = os.path.splitext(out)
    if ext.lower() == ".md":
        out_md, out_html = out, stem + ".html"
    elif ext.lower() in (".html", ".htm"):
        out_html, out_md = out, stem + ".md"
    else:
        raise NirDeployError(f"-o must end in .html or .md, got {out!r}")
    if args.no_markdown:
        out_md = None
    if not os.path.exists(args.input):
        raise NirDeployError(f"cannot read {args.input}: no such file or directory")
    check_output_path(out_html, "-o", inputs=[args.input])
    check_output_path(out_md, "-o", inputs=[args.input, out_html])
    res = build_report(args.input, out_html, out_md, energy_models=args.energy_model or None)
    if not args.quiet:
        print_summary(res)
    for kind, p in res["paths"].items():
        print(f"wrote {p}")
    from toolchain.cli.output import emit

    emit(args, {"output": out, "paths": res["paths"], "kind": res.get("kind"),
                "sections": res.get("sections")})  # fmt: skip
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help="metrics, energy and chip resources of a run record or sweep as HTML + Markdown with plots",
    )
    p.add_argument("input", help="run record (.json from simulate/demo) or a sweep directory (with sweep.json)")
    p.add_argument("-o", "--output", required=True, help="REPORT.html (a REPORT.md is written next to it) or REPORT.md")
    p.add_argument(
        "--energy-model",
        action="append",
        metavar="NAME|FILE.toml",
        help="energy model(s) to apply instead of the defaults: a shipped name (loihi2-pilotnet, loihi2-estimate, loihi1-sanafe, "
        "loihi1-davies2018) or your own TOML file; repeat for several",
    )
    p.add_argument("--no-markdown", action="store_true", help="write only the HTML")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print the tables")
    p.set_defaults(func=cmd_report)
