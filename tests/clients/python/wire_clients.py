"""psycopg 3 or asyncpg through the router's PostgreSQL listener, as an application uses them.

    python wire_clients.py psycopg|asyncpg

Two clients of one tenant, A and B, take turns: who they are, the same parameterised query in
several transactions (psycopg prepares it as a named statement after five executions, asyncpg
prepares every query it fetches), transactions committed and rolled back, a setting A makes and
B must never see, and what a tenant is refused (another tenant's schema, SET ROLE). Prints one
JSON object of what the clients saw; the Rust test (tests/e2e/tests/e2e/postgres_clients.rs)
says what they should have seen. An unexpected error stops the run and is reported in "error"
with the step it happened in.

Environment:
    PG_HOST, PG_PORT, PG_USER, PG_PASSWORD, PG_DATABASE
                      where to connect, as whom (the tenant's role), and the database
    PG_OPTIONS        startup options (e.g. "-c tenant=acme"), if any
    OTHER_SCHEMA      another tenant's schema, which these clients must not read
"""

import asyncio
import json
import os
import sys
import time

ROUNDS = 3
EXECUTIONS = 10
SETTING = "4242ms"


def sqlstate(error):
    """The SQLSTATE of a database error, else the error's kind (for the report)."""
    return getattr(error, "sqlstate", None) or type(error).__name__


class Report(dict):
    """What the clients saw, step by step."""

    def __init__(self, client):
        super().__init__(client=client, error=None)
        self.step = "connect"

    def failed(self, error):
        self["error"] = {
            "step": self.step,
            "sqlstate": sqlstate(error),
            "message": str(error).strip(),
        }


# ------------------------------------------------------------------------------ psycopg ---


def run_psycopg(report, settings, other_schema):
    import psycopg

    # Autocommit off (psycopg's default): every statement runs in a transaction psycopg opens.
    a = psycopg.connect(**settings, application_name="psycopg-a")
    b = psycopg.connect(**settings, application_name="psycopg-b")
    try:
        report.step = "identity"
        report["identity"] = []
        for conn in (a, b):
            user, schema = conn.execute("SELECT current_user, current_schema()").fetchone()
            conn.commit()
            report["identity"].append({"user": user, "schema": schema})

        report.step = "insert"
        ids = []
        for n in range(3):
            (user_id,) = a.execute(
                "INSERT INTO users (email, name) VALUES (%s, %s) RETURNING id",
                (f"psycopg-{n}@example.test", f"psycopg user {n}"),
            ).fetchone()
            ids.append(user_id)
        a.commit()

        report.step = "transactions"
        insert_user = "INSERT INTO users (email, name) VALUES (%s, %s)"
        a.execute(insert_user, ("psycopg-kept@example.test", "kept"))
        a.commit()
        b.execute(insert_user, ("psycopg-gone@example.test", "gone"))
        b.rollback()
        count = "SELECT count(*) FROM users WHERE email = %s"
        report["transactions"] = {
            "committed": a.execute(count, ("psycopg-kept@example.test",)).fetchone()[0],
            "rolled_back": a.execute(count, ("psycopg-gone@example.test",)).fetchone()[0],
        }
        a.commit()

        # A SET in a transaction that commits lasts for the session (PostgreSQL's rule);
        # one made in autocommit mode too. B sees neither.
        report.step = "settings"
        a.execute(f"SET statement_timeout = '{SETTING}'")
        a.commit()
        a.autocommit = True
        a.execute("SET application_name = 'psycopg-a-renamed'")
        a.autocommit = False
        own, other = [], []
        for _ in range(ROUNDS):
            own.append(list(a.execute(
                "SELECT current_setting('statement_timeout'), current_setting('application_name')"
            ).fetchone()))
            a.commit()
            other.append(list(b.execute(
                "SELECT current_setting('statement_timeout'), current_setting('application_name')"
            ).fetchone()))
            b.commit()
        report["settings"] = {"own": own, "other": other}

        # The unnamed statement, through libpq itself (PQprepare with an empty name, then
        # PQexecPrepared, each its own transaction): A's lasts for A until A sends a simple
        # query; B, which prepared none, is told it does not exist, never runs A's.
        report.step = "unnamed"
        from psycopg import pq

        def run_unnamed(conn):
            result = conn.pgconn.exec_prepared(b"", [])
            if result.status == pq.ExecStatus.TUPLES_OK:
                return result.get_value(0, 0).decode()
            return result.error_field(pq.DiagnosticField.SQLSTATE).decode()

        def prepare_unnamed(conn, sql):
            result = conn.pgconn.prepare(b"", sql)
            if result.status != pq.ExecStatus.COMMAND_OK:
                raise RuntimeError(result.error_message.decode())

        prepare_unnamed(a, b"SELECT 'a-unnamed'")
        unnamed = {"other": run_unnamed(b), "own": run_unnamed(a), "own_again": run_unnamed(a)}
        prepare_unnamed(b, b"SELECT 'b-unnamed'")
        a.pgconn.exec_(b"SELECT 1")
        unnamed["own_after_query"] = run_unnamed(a)
        unnamed["other_own"] = run_unnamed(b)
        report["unnamed"] = unnamed

        # COPY in and out in autocommit mode (simple protocol; the server ends the COPY with
        # ReadyForQuery, the client sends no Sync): once it is over, A's server connection is
        # back in the pool. B holds the other one in a transaction while C, a third client,
        # is served on it.
        report.step = "copy"
        a.autocommit = True
        with a.cursor() as cursor:
            with cursor.copy("COPY users (email, name) FROM STDIN") as copy:
                for n in range(3):
                    copy.write_row((f"psycopg-copy-{n}@example.test", f"copied {n}"))
            with cursor.copy(
                "COPY (SELECT email FROM users WHERE email LIKE 'psycopg-copy-%' ORDER BY email) TO STDOUT"
            ) as copy:
                copied = [row[0] for row in copy.rows()]
        a.autocommit = False
        b.execute("SELECT 1")
        try:
            with psycopg.connect(**settings, application_name="psycopg-c", autocommit=True) as c:
                third_client = c.execute("SELECT 'served'").fetchone()[0]
        except psycopg.Error as error:
            third_client = sqlstate(error)
        b.commit()
        report["copy"] = {"copied": copied, "third_client": third_client}

        report.step = "refusals"
        report["refusals"] = {}
        for name, sql in (
            ("other_schema", f"SELECT * FROM {other_schema}.users"),
            ("set_role", "SET ROLE postgres"),
        ):
            try:
                a.execute(sql)
                report["refusals"][name] = "allowed"
            except psycopg.Error as error:
                report["refusals"][name] = sqlstate(error)
            a.rollback()
        report["refusals"]["usable_after"] = a.execute("SELECT 1").fetchone()[0]
        a.commit()

        # A refused statement fails its transaction, as any error does in PostgreSQL: what the
        # transaction did before is not committed.
        report.step = "refused_in_transaction"
        a.execute(insert_user, ("psycopg-refused@example.test", "refused"))
        try:
            a.execute("SET ROLE postgres")
        except psycopg.Error:
            pass
        # What the server said of the transaction after the error (ReadyForQuery).
        report["status_after_refusal"] = a.info.transaction_status.name
        try:
            a.commit()
        except psycopg.Error:
            a.rollback()
        report["refused_in_transaction"] = a.execute(
            count, ("psycopg-refused@example.test",)
        ).fetchone()[0]
        a.commit()

        # The same query ten times in each transaction: prepared (named) from the sixth on,
        # then reused in the next transactions; B does the same in between.
        report.step = "repeated"
        report["repeated"] = []
        for _ in range(ROUNDS):
            for conn in (a, b):
                seen = []
                for i in range(EXECUTIONS):
                    (email,) = conn.execute(
                        "SELECT email FROM users WHERE id = %s", (ids[i % len(ids)],)
                    ).fetchone()
                    seen.append(email)
                conn.commit()
                if conn is a:
                    report["repeated"].append(seen)
        report["prepared"] = len(getattr(getattr(a, "_prepared", None), "_names", ()))
    finally:
        a.close()
        b.close()


def run_pipelines(report, settings):
    """Pipelines left without a Sync (libpq's pipeline mode): one whose statement is done and
    whose client then goes idle is ended as an idle transaction is (25P03); one whose
    statement runs long is cancelled at the plan's statement timeout (57014), whatever the
    client set its own to, and not taken for idle meanwhile."""
    import psycopg
    from psycopg import pq

    def wait_for(pgconn, seconds):
        """Reads until the server answers or closes, or `seconds` pass: ("ok" for rows, the
        SQLSTATE of an error, "closed", or None; the seconds it took)."""
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            try:
                pgconn.consume_input()
            except psycopg.OperationalError:
                return "closed", time.monotonic() - started
            if pgconn.status == pq.ConnStatus.BAD:
                return "closed", time.monotonic() - started
            while not pgconn.is_busy():
                result = pgconn.get_result()
                if result is None:
                    break
                if result.status == pq.ExecStatus.TUPLES_OK:
                    return "ok", time.monotonic() - started
                if result.status == pq.ExecStatus.FATAL_ERROR:
                    code = result.error_field(pq.DiagnosticField.SQLSTATE) or b"?"
                    return code.decode(), time.monotonic() - started
            time.sleep(0.05)
        return None, time.monotonic() - started

    def send_unsynced(conn, sql):
        pgconn = conn.pgconn
        pgconn.enter_pipeline_mode()
        pgconn.send_query_params(sql, None)
        pgconn.send_flush_request()
        while pgconn.flush() != 0:
            time.sleep(0.01)
        return pgconn

    report["pipelines"] = {}
    idle = psycopg.connect(**settings, application_name="psycopg-idle-pipeline", autocommit=True)
    slow = psycopg.connect(**settings, application_name="psycopg-slow-pipeline", autocommit=True)
    try:
        report.step = "idle_pipeline"
        pgconn = send_unsynced(idle, b"SELECT 1")
        report["pipelines"]["answered"] = wait_for(pgconn, 10)[0]
        report["pipelines"]["idle"] = wait_for(pgconn, 10)[0]

        report.step = "slow_pipeline"
        slow.execute("SET statement_timeout = 0")
        pgconn = send_unsynced(slow, b"SELECT pg_sleep(30)")
        outcome, seconds = wait_for(pgconn, 25)
        report["pipelines"]["slow"] = outcome
        report["pipelines"]["slow_seconds"] = round(seconds, 1)
    finally:
        idle.close()
        slow.close()


# ------------------------------------------------------------------------------ asyncpg ---


async def run_asyncpg(report, settings, other_schema):
    import asyncpg

    startup = {"options": settings["options"]} if settings["options"] else {}
    connect = dict(
        host=settings["host"], port=settings["port"], user=settings["user"],
        password=settings["password"], database=settings["dbname"],
    )
    a = await asyncpg.connect(**connect, server_settings={**startup, "application_name": "asyncpg-a"})
    b = await asyncpg.connect(**connect, server_settings={**startup, "application_name": "asyncpg-b"})
    try:
        report.step = "identity"
        report["identity"] = []
        for conn in (a, b):
            row = await conn.fetchrow("SELECT current_user AS u, current_schema() AS s")
            report["identity"].append({"user": row["u"], "schema": row["s"]})

        report.step = "insert"
        ids = []
        async with a.transaction():
            for n in range(3):
                ids.append(await a.fetchval(
                    "INSERT INTO users (email, name) VALUES ($1, $2) RETURNING id",
                    f"asyncpg-{n}@example.test", f"asyncpg user {n}",
                ))

        # fetch with parameters in several transactions: asyncpg prepares each query once, as a
        # named statement, and reuses it; B does the same in between.
        report.step = "repeated"
        report["repeated"] = []
        for _ in range(ROUNDS):
            for conn in (a, b):
                seen = []
                async with conn.transaction():
                    for i in range(EXECUTIONS):
                        rows = await conn.fetch(
                            "SELECT email FROM users WHERE id = $1", ids[i % len(ids)]
                        )
                        seen.append(rows[0]["email"])
                if conn is a:
                    report["repeated"].append(seen)
        report["prepared"] = len(getattr(a, "_stmt_cache", ()))

        report.step = "transactions"
        insert = "INSERT INTO users (email, name) VALUES ($1, $2)"
        async with a.transaction():
            await a.execute(insert, "asyncpg-kept@example.test", "kept")

        class Abandon(Exception):
            pass

        try:
            async with b.transaction():
                await b.execute(insert, "asyncpg-gone@example.test", "gone")
                raise Abandon()
        except Abandon:
            pass
        count = "SELECT count(*) FROM users WHERE email = $1"
        report["transactions"] = {
            "committed": await a.fetchval(count, "asyncpg-kept@example.test"),
            "rolled_back": await a.fetchval(count, "asyncpg-gone@example.test"),
        }

        # A SET outside a transaction (a simple query: execute without arguments) lasts for
        # the session; one in a transaction block that commits too. B sees neither.
        report.step = "settings"
        await a.execute(f"SET statement_timeout = '{SETTING}'")
        async with a.transaction():
            await a.execute("SET application_name = 'asyncpg-a-renamed'")
        own, other = [], []
        show = "SELECT current_setting('statement_timeout') AS t, current_setting('application_name') AS n"
        for _ in range(ROUNDS):
            async with a.transaction():
                row = await a.fetchrow(show)
                own.append([row["t"], row["n"]])
            async with b.transaction():
                row = await b.fetchrow(show)
                other.append([row["t"], row["n"]])
        report["settings"] = {"own": own, "other": other}

        report.step = "refusals"
        report["refusals"] = {}
        for name, sql in (
            ("other_schema", f"SELECT * FROM {other_schema}.users"),
            ("set_role", "SET ROLE postgres"),
        ):
            # fetch: extended protocol (a named statement); execute: a simple query.
            for how, call in (("", a.fetch), ("_simple", a.execute)):
                try:
                    await call(sql)
                    report["refusals"][name + how] = "allowed"
                except asyncpg.PostgresError as error:
                    report["refusals"][name + how] = sqlstate(error)
        report["refusals"]["usable_after"] = await a.fetchval("SELECT 1")

        # A refused statement fails its transaction, as any error does in PostgreSQL: what the
        # transaction did before is not committed.
        report.step = "refused_in_transaction"
        try:
            async with a.transaction():
                await a.execute(insert, "asyncpg-refused@example.test", "refused")
                try:
                    await a.execute("SET ROLE postgres")
                except asyncpg.PostgresError:
                    pass
        except asyncpg.PostgresError:
            pass
        report["refused_in_transaction"] = await a.fetchval(count, "asyncpg-refused@example.test")
    finally:
        await a.close()
        await b.close()


def main():
    client = sys.argv[1] if len(sys.argv) > 1 else ""
    other_schema = os.environ["OTHER_SCHEMA"]
    settings = {
        "host": os.environ["PG_HOST"],
        "port": int(os.environ["PG_PORT"]),
        "user": os.environ["PG_USER"],
        "password": os.environ["PG_PASSWORD"],
        "dbname": os.environ["PG_DATABASE"],
        "options": os.environ.get("PG_OPTIONS", ""),
    }
    report = Report(client)
    try:
        if client == "psycopg":
            if not settings["options"]:
                del settings["options"]
            run_psycopg(report, settings, other_schema)
        elif client == "asyncpg":
            asyncio.run(run_asyncpg(report, settings, other_schema))
        elif client == "pipelines":
            if not settings["options"]:
                del settings["options"]
            run_pipelines(report, settings)
        else:
            print("usage: wire_clients.py psycopg|asyncpg|pipelines", file=sys.stderr)
            return 2
    except Exception as error:  # noqa: BLE001 - every failure is reported, with its step
        report.failed(error)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
