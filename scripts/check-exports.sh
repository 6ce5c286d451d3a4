#!/bin/sh
# A plugin exports its entry symbol and nothing else (linker-made section
# markers aside), so two plugins can never collide or lean on each other.
bad=0
for so in "$@"; do
    extra=$(nm -D --defined-only "$so" | awk '{print $3}' |
            grep -vxE 'baton_plugin_entry|_init|_fini|_edata|_end|__bss_start' || true)
    has=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -cx baton_plugin_entry)
    if [ "$has" != 1 ] || [ -n "$extra" ]; then
        echo "check-exports: $so: exports $(echo $extra | tr '\n' ' ')(entry found: $has)"
        bad=1
    fi
done
[ $bad -eq 0 ] && echo "check-exports: $# plugin(s) export only baton_plugin_entry"
exit $bad
