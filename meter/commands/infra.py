"""`meter kafka start|stop|status` and `meter topics create`."""

from __future__ import annotations

import typer
from rich.console import Console

from groundwork.settings import get_settings

console = Console(stderr=True)
kafka_app = typer.Typer(help="The local Apache Kafka broker (KRaft, jars from Maven Central).",
                        no_args_is_help=True)
topics_app = typer.Typer(help="Kafka topics from deploy/topics.toml.", no_args_is_help=True)


@kafka_app.command("start")
def kafka_start() -> None:
    """Start the broker on 127.0.0.1 and wait until it answers metadata requests."""
    from deploy import kafka_local

    with console.status("starting Kafka") as status:
        kafka_local.start(get_settings(), progress=lambda msg: status.update(msg))
    s = get_settings()
    console.print(f"[green]Kafka ready[/] on {s.kafka_bootstrap}; "
                  f"logs in {kafka_local.kafka_paths(s).logs}")


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop the broker (SIGTERM, wait, then SIGKILL)."""
    from deploy import kafka_local

    with console.status("stopping Kafka") as status:
        stopped = kafka_local.stop(get_settings(), progress=lambda msg: status.update(msg))
    console.print("Kafka stopped" if stopped else "Kafka was not running")


@kafka_app.command("status")
def kafka_status() -> None:
    """Say whether the broker runs and answers; exit 1 when it does not answer."""
    from deploy import kafka_local

    st = kafka_local.status(get_settings())
    state = "[green]answering[/]" if st.answering else "[red]not answering[/]"
    pid = f"pid {st.pid}" if st.pid else "no local process"
    console.print(f"Kafka at {st.bootstrap}: {state} ({pid}); logs in {st.logs}")
    if not st.answering:
        raise typer.Exit(1)


@topics_app.command("create")
def topics_create() -> None:
    """Create every topic of deploy/topics.toml that does not exist yet."""
    from deploy.topics import create_topics

    created = create_topics(get_settings(), progress=lambda msg: console.print(msg))
    console.print(f"[green]{len(created)} topics created[/]" if created else "nothing to create")


def register(app: typer.Typer) -> None:
    app.add_typer(kafka_app, name="kafka")
    app.add_typer(topics_app, name="topics")
