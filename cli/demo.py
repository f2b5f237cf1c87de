"""`forget demo`: the whole story on bundled data, for a first look."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.app import out
from cli.errors import reports_errors
from forget.choices import DeviceChoice

commands = typer.Typer()


@commands.command()
@reports_errors
def demo(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Where to build the demo (default: a new temp folder).")
    ] = None,
    device: Annotated[DeviceChoice, typer.Option(help="auto: CUDA when present, else the CPU.")] = DeviceChoice.AUTO,
) -> None:
    """End to end on bundled data: train, erase on request, verify the certificates offline."""
    from forget.demo import run_demo

    run_demo(directory, device, out.print)
