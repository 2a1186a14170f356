"""Verify the audit hash chain against its signed checkpoints (exit status 1 if broken).

    manage.py verify_audit [--checkpoints PATH] [--write-checkpoint]

The first line says "Audit chain intact: N events." or "Audit chain broken at event ID:
…"; the lines after it say what the checkpoints covered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from grading.audit import ChainReport, audit_checkpoint_write, audit_verify, checkpoint_dir


class Command(BaseCommand):
    help = "Verify the tamper-evident audit trail against its signed checkpoints."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--checkpoints",
            metavar="PATH",
            help="Checkpoint directory, or one checkpoint file, e.g. a copy kept elsewhere "
            "(default: AUDIT_CHECKPOINT_DIR).",
        )
        parser.add_argument(
            "--write-checkpoint",
            action="store_true",
            help="Once the trail verifies, sign its length and newest hash into the "
            "checkpoint directory; the first time after upgrading, this also seals the "
            "events written before the audit key.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["checkpoints"]) if options["checkpoints"] else checkpoint_dir()
        write = options["write_checkpoint"]
        if write and path.is_file():
            raise CommandError("--write-checkpoint needs a directory, not a file.")
        report = audit_verify(checkpoints=path, require_seal=not write)
        if not report.ok:
            where = f" at event {report.broken_at}" if report.broken_at is not None else ""
            self.stderr.write(
                self.style.ERROR(
                    f"Audit chain broken{where}: {report.problem}. "
                    f"{report.checked} events before it verified."
                )
            )
            raise SystemExit(1)
        self.stdout.write(self.style.SUCCESS(f"Audit chain intact: {report.checked} events."))
        for line in _notes(report):
            self.stdout.write(line)
        if write:
            checkpoint = audit_checkpoint_write(
                directory=path, seal=bool(report.legacy and not report.sealed_at)
            )
            if checkpoint is None:
                self.stdout.write("No new checkpoint: the newest one already covers the trail.")
            else:
                sealed = (
                    f", sealing the {checkpoint.legacy_count} events from before the audit key"
                    if checkpoint.legacy_count is not None
                    else ""
                )
                self.stdout.write(
                    f"Checkpoint written to {path}: {checkpoint.count} events up to event "
                    f"{checkpoint.last_id}{sealed}."
                )


def _notes(report: ChainReport) -> list[str]:
    notes = []
    if report.checkpoints:
        notes.append(
            f"Checked against {report.checkpoints} signed checkpoints in "
            f"{report.checkpoint_path}; the newest ({report.newest_checkpoint_at}) covers "
            f"{report.covered} of the {report.checked} events."
        )
        if report.checked > report.covered:
            notes.append(
                f"The {report.checked - report.covered} newer events are protected by the "
                "chain alone until the next checkpoint: deleting them would not show."
            )
    elif report.checked:
        notes.append(
            f"No checkpoints of this database in {report.checkpoint_path}: deleting the "
            "newest events or emptying the table would not show."
        )
    if report.other_databases:
        notes.append(f"{report.other_databases} checkpoints of other databases there were ignored.")
    if report.legacy:
        sealed = f"sealed on {report.sealed_at}" if report.sealed_at else "not sealed yet"
        notes.append(
            f"{report.legacy} events are from before the audit key (unkeyed hashes), {sealed}."
        )
    if report.legacy_unreproduced:
        shown = ", ".join(map(str, report.legacy_unreproduced[:20]))
        more = " …" if len(report.legacy_unreproduced) > 20 else ""
        notes.append(
            f"{len(report.legacy_unreproduced)} of them do not reproduce their old hash "
            f"(events {shown}{more}): the old rule hashed datetimes differently from how "
            "they were stored, or they were edited before the upgrade."
        )
    return notes
