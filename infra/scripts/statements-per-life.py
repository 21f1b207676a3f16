#!/usr/bin/env python3
"""Statements per cluster life, from a Postgres log written with log_statement = 'all'.

Usage (the cluster benchmark's scratch databases are named iocloud_scratch_*):

    psql -h 127.0.0.1 -U root -d test -c "alter system set log_statement='all'" -c "select pg_reload_conf()"
    truncate -s0 /var/log/postgresql/postgresql-15-main.log
    ./target/release/iocloud bench clusters --postgres postgres://root@127.0.0.1:5432/test --seconds 4 --rate 100
    psql -h 127.0.0.1 -U root -d test -c "alter system reset log_statement" -c "select pg_reload_conf()"
    infra/scripts/statements-per-life.py /var/log/postgresql/postgresql-15-main.log

A life is counted per `INSERT INTO clusters`; each statement's text is cut to its first 110
characters, so statements that differ only further on are counted together.
"""

import collections
import re
import sys

LINE = re.compile(r"root@iocloud_scratch\S*\s+LOG:\s+(?:execute [^:]*|statement): (.*)")


def main(path: str, top: int) -> None:
    counts: collections.Counter[str] = collections.Counter()
    with open(path, errors="replace") as log:
        for line in log:
            m = LINE.search(line)
            if m:
                counts[re.sub(r"\s+", " ", m.group(1))[:110]] += 1
    lives = sum(n for s, n in counts.items() if s.startswith("INSERT INTO clusters"))
    if lives == 0:
        sys.exit("no cluster was created in this log")
    total = sum(counts.values())
    print(f"lives {lives}, statements {total}, per life {total / lives:.2f}")
    for statement, n in counts.most_common(top):
        print(f"{n / lives:6.2f}  {statement}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 50)
