# baton — build, test, install, demo, bench, fuzz.
#
#   make                 build/baton and build/plugins/<name>.so
#   make test            every test (unit, plugins, integration)
#   make demo            the bundled example, end to end
#   make install         PREFIX=/usr/local DESTDIR=
#   make SANITIZE=1 ...  AddressSanitizer + UndefinedBehaviorSanitizer (in build-san/)
#   make check-exports   a plugin exports nothing but its entry symbol
#   make check-layers    core/ folders include only the stages below them
#   make check-format    every C file is as clang-format (.clang-format) leaves it
#   make check-docs      docs/ links, commands and settings tables are current
#   make format          apply .clang-format
#   make bench | fuzz    benchmarks; libFuzzer targets (FUZZ_SECONDS=60)
#
# Sources are found by layout, never listed: core/**.c is the host,
# plugins/<name>/*.c is build/plugins/<name>.so (with the pkg-config
# packages named in plugins/<name>/pkgs), tests/unit/test_*.c and
# tests/integration/test_*.c link the core, tests/plugins/test_<plugin>.c
# links the core and that plugin's sources, tests/fixtures/plugins/*.c are
# loader fixtures, tests/bench/bench_*.c are benchmarks.

PREFIX ?= /usr/local
DESTDIR ?=
CC ?= cc
VERSION := 0.1.0
# the SDK's ABI, as the header says it (the installed baton-sdk.pc too)
ABI_MAJOR := $(shell sed -n 's/^\#define BATON_ABI_MAJOR //p' sdk/include/baton/baton.h)
ABI_MINOR := $(shell sed -n 's/^\#define BATON_ABI_MINOR //p' sdk/include/baton/baton.h)

ifeq ($(SANITIZE),1)
BUILD ?= build-san
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD ?= build
SAN :=
endif

CORE_PKGS := libconfig jansson sqlite3 libmicrohttpd
# Recursive on purpose: pkg-config runs when a recipe needs it, after `deps`.
PKG_CFLAGS = $(shell pkg-config --cflags $(1))
PKG_LIBS = $(shell pkg-config --libs $(1))

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wno-unused-parameter -Wformat=2 -Wvla
WERROR ?= -Werror
OPT ?= -O2 -g
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) $(WERROR) $(SAN) -pthread \
               -Isdk/include -Icore -DBATON_VERSION='"$(VERSION)"'
CORE_CFLAGS = $(BASE_CFLAGS) -DBATON_SOURCE_WEB='"$(CURDIR)/web"' $(call PKG_CFLAGS,$(CORE_PKGS))
CORE_LIBS = $(call PKG_LIBS,$(CORE_PKGS)) -ldl -lm -pthread
PLUGIN_CFLAGS := $(BASE_CFLAGS) -fPIC -fvisibility=hidden
PLUGIN_LDFLAGS := -shared -Wl,-z,defs $(SAN)

CORE_SRC := $(shell find core -name '*.c' ! -path core/main.c | sort)
CORE_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(CORE_SRC))
CORE_LIB := $(BUILD)/libbatoncore.a
BATON := $(BUILD)/baton

PLUGINS := $(sort $(notdir $(patsubst %/,%,$(wildcard plugins/*/))))
PLUGIN_SO := $(patsubst %,$(BUILD)/plugins/%.so,$(PLUGINS))
plugin_pkgs = $(strip $(shell cat plugins/$(1)/pkgs 2>/dev/null))

FIXTURE_SRC := $(wildcard tests/fixtures/plugins/*.c)
FIXTURE_SO := $(patsubst tests/fixtures/plugins/%.c,$(BUILD)/tests/fixtures/%.so,$(FIXTURE_SRC))

UNIT_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/test_*.c))
INTEG_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/integration/test_*.c))
PTEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/plugins/test_*.c))
BENCH_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/bench/bench_*.c))
TEST_BIN := $(UNIT_BIN) $(PTEST_BIN) $(INTEG_BIN)

DEPS_STAMP := $(BUILD)/.deps
TEST_SUPPORT := $(wildcard tests/support/*.c)

.PHONY: all deps test demo install check-exports check-layers check-format check-docs bench fuzz clean format
all: $(BATON) $(PLUGIN_SO)

# Install missing Debian packages once per build directory.
deps: $(DEPS_STAMP)
$(DEPS_STAMP): scripts/deps.sh
	@sh scripts/deps.sh
	@mkdir -p $(@D) && touch $@

$(BUILD)/obj/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CORE_CFLAGS) -MMD -MP -c $< -o $@

$(CORE_LIB): $(CORE_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(BATON): $(BUILD)/obj/core/main.o $(CORE_LIB)
	$(CC) $(SAN) -o $@ $^ $(CORE_LIBS)

define plugin_rule
$(BUILD)/plugins/$(1).so: $(wildcard plugins/$(1)/*.c) $(wildcard plugins/$(1)/*.h) $(wildcard sdk/include/baton/*.h) | $(DEPS_STAMP)
	@mkdir -p $$(@D)
	$$(CC) $$(PLUGIN_CFLAGS) -MMD -MP $$(call PKG_CFLAGS,$$(call plugin_pkgs,$(1))) -o $$@ $(wildcard plugins/$(1)/*.c) $$(PLUGIN_LDFLAGS) $$(call PKG_LIBS,$$(call plugin_pkgs,$(1)))
$(BUILD)/tests/plugins/test_$(1): tests/plugins/test_$(1).c $(wildcard plugins/$(1)/*.c) $(TEST_SUPPORT) $(CORE_LIB)
	@mkdir -p $$(@D)
	$$(CC) $$(CORE_CFLAGS) -MMD -MP $$(call PKG_CFLAGS,cmocka $$(call plugin_pkgs,$(1))) -Iplugins/$(1) -Itests -o $$@ $$(filter %.c,$$^) $(CORE_LIB) $$(call PKG_LIBS,cmocka $$(call plugin_pkgs,$(1))) $$(CORE_LIBS)
endef
$(foreach p,$(PLUGINS),$(eval $(call plugin_rule,$(p))))

# Fixtures are deliberately odd plugins; each is one file.
$(BUILD)/tests/fixtures/%.so: tests/fixtures/plugins/%.c sdk/include/baton/baton.h | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(PLUGIN_CFLAGS) -o $@ $< $(PLUGIN_LDFLAGS)

define test_recipe
	@mkdir -p $(@D)
	$(CC) $(CORE_CFLAGS) -MMD -MP $(call PKG_CFLAGS,cmocka) -Itests -o $@ $< $(TEST_SUPPORT) $(CORE_LIB) $(call PKG_LIBS,cmocka) $(CORE_LIBS)
endef
$(BUILD)/tests/unit/%: tests/unit/%.c $(CORE_LIB) $(TEST_SUPPORT)
	$(test_recipe)
$(BUILD)/tests/integration/%: tests/integration/%.c $(CORE_LIB) $(TEST_SUPPORT)
	$(test_recipe)
$(BUILD)/tests/bench/%: tests/bench/%.c $(CORE_LIB) $(TEST_SUPPORT)
	$(test_recipe)

test: all $(FIXTURE_SO) $(TEST_BIN)
	@sh scripts/check-exports.sh $(PLUGIN_SO)
	@sh scripts/check-layers.sh
	@sh scripts/check-format.sh
	@sh scripts/check-docs.sh $(BUILD)
	@BUILD=$(BUILD) sh scripts/run-tests.sh $(TEST_BIN)

demo: all
	@BUILD=$(BUILD) sh scripts/demo.sh

bench: all $(BENCH_BIN)
	@BUILD=$(BUILD) sh scripts/run-bench.sh $(BENCH_BIN)

check-exports: $(PLUGIN_SO)
	@sh scripts/check-exports.sh $(PLUGIN_SO)

check-layers:
	@sh scripts/check-layers.sh

check-format:
	@sh scripts/check-format.sh

check-docs: all
	@sh scripts/check-docs.sh $(BUILD)

FUZZ_SECONDS ?= 60
fuzz: | $(DEPS_STAMP)
	@FUZZ_SECONDS=$(FUZZ_SECONDS) sh scripts/fuzz.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/baton/plugins \
	  $(DESTDIR)$(PREFIX)/include/baton $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	  $(DESTDIR)$(PREFIX)/share/doc/baton
	install -m 755 $(BATON) $(DESTDIR)$(PREFIX)/bin/baton
	$(if $(PLUGIN_SO),install -m 755 $(PLUGIN_SO) $(DESTDIR)$(PREFIX)/lib/baton/plugins/)
	install -m 644 sdk/include/baton/*.h $(DESTDIR)$(PREFIX)/include/baton/
	install -m 644 docs/*.md $(DESTDIR)$(PREFIX)/share/doc/baton/
	if [ -d docs/img ]; then install -d $(DESTDIR)$(PREFIX)/share/doc/baton/img && \
	  install -m 644 docs/img/* $(DESTDIR)$(PREFIX)/share/doc/baton/img/; fi
	if [ -d web ]; then install -d $(DESTDIR)$(PREFIX)/share/baton/web && \
	  cp -R web/. $(DESTDIR)$(PREFIX)/share/baton/web/; fi
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' \
	  -e 's|@ABI_MAJOR@|$(ABI_MAJOR)|g' -e 's|@ABI_MINOR@|$(ABI_MINOR)|g' sdk/baton-sdk.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/baton-sdk.pc

format:
	clang-format -i $$(git ls-files 'core/*.[ch]' 'plugins/*.[ch]' 'sdk/*.[ch]' 'tests/*.[ch]')

clean:
	rm -rf build build-san build-fuzz $(BUILD)

-include $(CORE_OBJ:.o=.d) $(BUILD)/obj/core/main.d $(wildcard $(BUILD)/plugins/*.d) \
	$(wildcard $(BUILD)/tests/*/*.d)
