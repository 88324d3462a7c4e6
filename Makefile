# pg_courier: durable messaging inside PostgreSQL.
#
#   make demo    install what is missing, build, install, run the booking example
#   make test    the same set-up, then every test suite (last line: N passed, N failed)
#   make bench   the same set-up, then the benchmarks in bench/
#   make fuzz    fuzz the OpenPGP packet code (src/pgp.c) for FUZZ_SECONDS (60) seconds
#
# Everything below the first block is plain PGXS.

EXTENSION = pg_courier
MODULE_big = pg_courier
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
# The install script is built from src/sql/*.sql, joined in name order (one part per feature).
DATA_built = pg_courier--0.1.sql
SQL_PARTS = $(sort $(wildcard src/sql/*.sql))
PGFILEDESC = "pg_courier - durable messaging inside PostgreSQL"

REGRESS = $(basename $(notdir $(sort $(wildcard sql/*.sql))))
REGRESS_OPTS = --inputdir=. --load-extension=pg_courier
ISOLATION = $(basename $(notdir $(sort $(wildcard test/isolation/specs/*.spec))))
ISOLATION_OPTS = --inputdir=test/isolation --outputdir=output_iso --load-extension=pg_courier

PG_CFLAGS = -Wall -Werror -Wmissing-prototypes
SHLIB_LINK = -lcrypto

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifeq ($(PGXS),)
# No server headers yet: only the set-up targets below can run.
all install installcheck:
	@echo "pg_config not found: run 'make demo' or 'make test' first (they install it)"; exit 1
else
include $(PGXS)
endif

$(OBJS): src/courier.h
src/crypto.o src/pgp.o: src/pgp.h

pg_courier--0.1.sql: $(SQL_PARTS)
	cat $(SQL_PARTS) > $@

.PHONY: demo test bench setup fuzz

setup:
	@tools/setup.sh

demo:
	@tools/setup.sh
	@tools/demo.sh

test:
	@tools/setup.sh
	@test/run.sh

bench:
	@tools/setup.sh
	@bench/run

fuzz:
	@fuzz/run.sh
