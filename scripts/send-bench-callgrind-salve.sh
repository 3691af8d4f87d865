#!/bin/sh
# Runs `salve serve` under callgrind (instrumentation off until the bench's hook zeroes it);
# every other salve command runs natively. CG_REAL: the real binary; CG_OUT: output dir.
case " $* " in
  *" serve "*) exec valgrind --tool=callgrind --fair-sched=yes --callgrind-out-file="$CG_OUT/callgrind.out.%p" "$CG_REAL" "$@" ;;
esac
exec "$CG_REAL" "$@"
