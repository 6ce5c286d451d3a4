"""A strict reader of the Prometheus text exposition format (0.0.4), for
tests of GET /metrics: reads the text on stdin, fails (exit 1, the line
and why on stderr) on anything the format does not allow, else prints the
families as JSON: {"NAME": {"type", "help", "samples": [[name, {labels},
value], ...]}}.

Checked: every line is "# HELP name text", "# TYPE name type", another
comment, or a sample "name{l="v",...} value [timestamp]"; names and label
names are valid (label names not reserved "__", no label twice); label
values use only the escapes \\\\ \\" \\n and HELP text only \\\\ \\n;
values are floats (NaN, +Inf, -Inf); at most one HELP and one TYPE per
family, both before its samples; a family's samples are contiguous; no
sample twice; a counter's value is >= 0; a histogram has, per label set,
buckets with le ascending, cumulative counts that never fall, a last
le="+Inf" equal to _count, and a _sum; a summary has _sum and _count per
label set (quantiles between 0 and 1); the text ends with a newline and
every family name starts with the prefix given (argv[1], default baton_)."""
import json
import math
import re
import sys

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class Bad(Exception):
    pass


def parse_value(s):
    if s in ("NaN", "+Inf", "-Inf", "Inf"):
        return float(s.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?", s):
        raise Bad("value %r is not a number" % s)
    return float(s)


def unescape(s, allowed):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            if i + 1 >= len(s) or s[i + 1] not in allowed:
                raise Bad("bad escape in %r" % s)
            out.append({"\\": "\\", '"': '"', "n": "\n"}[s[i + 1]])
            i += 2
            continue
        if c == "\n":
            raise Bad("a raw newline in %r" % s)
        out.append(c)
        i += 1
    return "".join(out)


def parse_labels(s, i):
    """s[i] is '{': the labels and the index after '}'."""
    labels = {}
    i += 1
    while True:
        if i < len(s) and s[i] == "}":
            return labels, i + 1
        m = LABEL.match(s, i)
        if not m:
            raise Bad("bad label name at column %d" % (i + 1))
        name = m.group(0)
        if name.startswith("__"):
            raise Bad("reserved label name %s" % name)
        if name in labels:
            raise Bad("label %s twice" % name)
        i = m.end()
        if s[i : i + 2] != '="':
            raise Bad('expected =" after label %s' % name)
        i += 2
        j = i
        while j < len(s) and s[j] != '"':
            j += 2 if s[j] == "\\" else 1
        if j >= len(s):
            raise Bad("label %s: unterminated value" % name)
        labels[name] = unescape(s[i:j], '\\"n')
        i = j + 1
        if i < len(s) and s[i] == ",":
            i += 1
        elif i >= len(s) or s[i] != "}":
            raise Bad("expected , or } after label %s" % name)


def family_of(name, types):
    for sfx in ("_bucket", "_sum", "_count"):
        if name.endswith(sfx):
            base = name[: -len(sfx)]
            if types.get(base) in ("histogram", "summary"):
                if sfx == "_bucket" and types[base] != "histogram":
                    raise Bad("%s: _bucket of a summary" % name)
                return base
    return name


def check(text, prefix):
    if not text.endswith("\n"):
        raise Bad("the text does not end with a newline")
    fams, types, seen, order = {}, {}, set(), []
    current = None
    for n, line in enumerate(text[:-1].split("\n"), 1):
        try:
            if line == "":
                continue
            if line.startswith("#"):
                parts = line.split(" ", 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    kind, name = parts[1], parts[2]
                    if not NAME.fullmatch(name):
                        raise Bad("bad metric name %r" % name)
                    f = fams.setdefault(name, {"type": None, "help": None, "samples": []})
                    if f["samples"]:
                        raise Bad("%s %s after its samples" % (kind, name))
                    rest = parts[3] if len(parts) > 3 else ""
                    if kind == "HELP":
                        if f["help"] is not None:
                            raise Bad("a second HELP for %s" % name)
                        f["help"] = unescape(rest, "\\n")
                    else:
                        if f["type"] is not None:
                            raise Bad("a second TYPE for %s" % name)
                        if rest not in TYPES:
                            raise Bad("unknown type %r for %s" % (rest, name))
                        f["type"] = rest
                        types[name] = rest
                    if name not in order:
                        order.append(name)
                continue
            m = NAME.match(line)
            if not m:
                raise Bad("a sample with no valid metric name")
            name, i = m.group(0), m.end()
            labels = {}
            if i < len(line) and line[i] == "{":
                labels, i = parse_labels(line, i)
            if line[i : i + 1] != " ":
                raise Bad("expected one space before the value")
            fields = line[i + 1 :].split(" ")
            if len(fields) not in (1, 2) or "" in fields:
                raise Bad("expected a value and at most a timestamp")
            value = parse_value(fields[0])
            if len(fields) == 2 and not re.fullmatch(r"-?\d+", fields[1]):
                raise Bad("bad timestamp %r" % fields[1])
            fam = family_of(name, types)
            if not fam.startswith(prefix):
                raise Bad("%s does not start with %s" % (fam, prefix))
            f = fams.setdefault(fam, {"type": None, "help": None, "samples": []})
            if fam != current and f["samples"]:
                raise Bad("the samples of %s are not together" % fam)
            current = fam
            if fam not in order:
                order.append(fam)
            key = (name, tuple(sorted(labels.items())))
            if key in seen:
                raise Bad("sample %s%s twice" % (name, labels))
            seen.add(key)
            t = f["type"] or "untyped"
            if t == "counter" and not value >= 0:
                raise Bad("counter %s is %r" % (name, value))
            if t == "histogram" and name.endswith("_bucket") and "le" not in labels:
                raise Bad("%s without le" % name)
            if t == "summary" and name == fam and "quantile" not in labels:
                raise Bad("%s without quantile" % name)
            if t == "histogram" and name == fam:
                raise Bad("a histogram sample %s without _bucket, _sum or _count" % name)
            f["samples"].append([name, labels, value])
        except Bad as e:
            raise Bad("line %d: %s: %s" % (n, e, line))
    for fam, f in fams.items():
        if not fam.startswith(prefix):
            raise Bad("%s does not start with %s" % (fam, prefix))
        if f["type"] in ("histogram", "summary"):
            sets = {}
            for name, labels, value in f["samples"]:
                rest = tuple(sorted((k, v) for k, v in labels.items() if k not in ("le", "quantile")))
                s = sets.setdefault(rest, {"buckets": [], "sum": None, "count": None})
                if name.endswith("_bucket"):
                    s["buckets"].append((parse_value(labels["le"]), value))
                elif name.endswith("_sum"):
                    s["sum"] = value
                elif name.endswith("_count"):
                    s["count"] = value
                elif "quantile" in labels:
                    q = parse_value(labels["quantile"])
                    if not 0 <= q <= 1:
                        raise Bad("%s: quantile %r" % (fam, q))
            for rest, s in sets.items():
                where = "%s%s" % (fam, dict(rest))
                if s["sum"] is None or s["count"] is None:
                    raise Bad("%s: no _sum or no _count" % where)
                if f["type"] == "histogram":
                    b = s["buckets"]
                    if not b or not math.isinf(b[-1][0]):
                        raise Bad('%s: the last bucket is not le="+Inf"' % where)
                    for k in range(1, len(b)):
                        if not b[k][0] > b[k - 1][0]:
                            raise Bad("%s: le not ascending at %r" % (where, b[k][0]))
                        if b[k][1] < b[k - 1][1]:
                            raise Bad("%s: buckets not cumulative at le=%r" % (where, b[k][0]))
                    if b[-1][1] != s["count"]:
                        raise Bad("%s: +Inf bucket %r != _count %r" % (where, b[-1][1], s["count"]))
    return fams


# Breaks of a real text that check() must refuse (--breaks FILE): each
# changes the text (or the test says so) and must fail.
BREAKS = [
    ("a second TYPE", lambda t: re.sub(r"(# TYPE (\S+) \S+\n)", r"\1\1", t, count=1)),
    ("a second HELP", lambda t: re.sub(r"(# HELP .*\n)", r"\1\1", t, count=1)),
    ("a TYPE after its samples", lambda t: t + "# TYPE baton_inbox_depth gauge\n"),
    ("a family's samples apart", lambda t: t + "baton_inbox_depth 0\n"),
    ("a sample twice", lambda t: re.sub(r"(\nbaton_inbox_depth .*\n)", r"\1baton_inbox_depth 1\n", t)),
    ("no newline at the end", lambda t: t[:-1]),
    ("a bad metric name", lambda t: t + "baton-bad 1\n"),
    ("another prefix", lambda t: t + "other_metric 1\n"),
    ("a bad escape", lambda t: t.replace("\\\\", "\\x", 1)),
    ("an unterminated label", lambda t: t.replace('"}', "}", 1)),
    ("a label twice", lambda t: t.replace('{source="', '{source="x",source="', 1)),
    ("a value that is no number", lambda t: re.sub(r"(\nbaton_inbox_depth) \S+", r"\1 12abc", t)),
    ("a negative counter", lambda t: re.sub(r"(\nbaton_events_routed_total) \S+", r"\1 -1", t)),
    ("an unknown type", lambda t: t.replace("# TYPE baton_inbox_depth gauge", "# TYPE baton_inbox_depth meter")),
    # (the email channel's histogram: serve has sent through it)
    ("buckets not cumulative",
     lambda t: re.sub(r'(baton_provider_latency_seconds_bucket\{[^}]*le="\+Inf"\}) \d+', r"\1 0", t, count=1)),
    ("no +Inf bucket", lambda t: re.sub(r'.*_bucket\{[^}]*le="\+Inf"\}.*\n', "", t, count=1)),
    ("no _sum", lambda t: re.sub(r"\nbaton_action_latency_seconds_sum .*", "", t)),
    ("a histogram sample without a suffix", lambda t: t.replace("baton_action_latency_seconds_sum", "baton_action_latency_seconds", 1)),
    ("two spaces before the value", lambda t: re.sub(r"(\nbaton_inbox_depth) ", r"\1  ", t)),
]


def breaks(path):
    text = open(path, encoding="utf-8").read()
    check(text, "baton_")  # the text itself is fine
    missed = []
    for name, f in BREAKS:
        broken = f(text)
        if broken == text:
            missed.append(name + " (the text has nothing to break)")
            continue
        try:
            check(broken, "baton_")
            missed.append(name)
        except Bad:
            pass
    for m in missed:
        sys.stderr.write("prom_check --breaks: not refused: %s\n" % m)
    sys.exit(1 if missed else 0)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--breaks":
        breaks(sys.argv[2])
    prefix = sys.argv[1] if len(sys.argv) > 1 else "baton_"
    text = sys.stdin.buffer.read().decode("utf-8")
    try:
        fams = check(text, prefix)
    except Bad as e:
        sys.stderr.write("prom_check: %s\n" % e)
        sys.exit(1)
    for f in fams.values():  # JSON has no NaN or Inf: those as strings
        for smp in f["samples"]:
            if not math.isfinite(smp[2]):
                smp[2] = repr(smp[2])
    json.dump(fams, sys.stdout, allow_nan=False)


if __name__ == "__main__":
    main()
