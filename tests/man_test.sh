#!/usr/bin/env bash
# Every man page renders without groff warnings, and every option that a program's --help lists
# is documented in its page. Usage: man_test.sh MANDIR [PAGE=PROGRAM ...]
set -u
mandir=$1; shift
status=0
for page in "$mandir"/*.[0-9]; do
  warnings=$(LC_ALL=C groff -man -ww -z "$page" 2>&1)
  if [ -n "$warnings" ]; then
    echo "FAIL $page: groff warnings:"; echo "$warnings"; status=1
  else
    echo "ok   $page renders cleanly"
  fi
done
for pair in "$@"; do
  page=${pair%%=*}; program=${pair#*=}
  text=$(LC_ALL=C MANWIDTH=200 man -l "$mandir/$page" 2>/dev/null | col -b)
  subcommands=$("$program" --help | awk '/^Subcommands:/{f=1;next} f&&/^  [a-z]/{print $1}')
  opts=$( { "$program" --help; for s in $subcommands; do "$program" "$s" --help; done; } |
    grep -oE '(^|[ ,])--[a-z][a-z0-9-]+' | sed 's/^[ ,]*//' | sort -u)
  for o in $opts $subcommands; do
    if ! grep -qF -- "$o" <<<"$text"; then
      echo "FAIL $page does not document $o"; status=1
    fi
  done
  [ $status -eq 0 ] && echo "ok   $page documents every option of $(basename "$program")"
done
# The same exit-status table in every program page: each code of common/sysexits.h is a row.
codes=$(grep -oE '= [0-9]+;' "$mandir/../common/sysexits.h" | tr -dc '0-9\n' | sort -un)
for pair in "$@"; do
  page=${pair%%=*}
  section=$(awk '/^\.SH EXIT STATUS/{f=1;next} /^\.SH /{f=0} f' "$mandir/$page")
  for code in $codes; do
    if ! grep -qx "\.B $code" <<<"$section"; then
      echo "FAIL $page: EXIT STATUS has no row for $code (common/sysexits.h)"; status=1
    fi
  done
done
exit $status
