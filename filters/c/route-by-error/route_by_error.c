// route-by-error in C: a redrive filter component, built with wit-bindgen's C generator (bindings generated at
// build time from guest-sdk/wit/filter.wit) and `zig cc`. Same decisions and reasons as the Rust version in
// filters/route-by-error:
//
// - a permanent pattern in the failure text (error text, error class, broker reason; lowercased) -> skip;
// - else a transient pattern -> replay;
// - no failure text at all -> the `default` verdict, reason "no failure context";
// - no pattern matches -> the `default` verdict, reason "unclassified error".
//
// Lowercasing is ASCII-only (tolower): non-ASCII bytes are compared as they are; the default patterns are ASCII.
//
// Memory: arguments of an export belong to the filter (free them with the generated *_free functions); what it
// returns must be allocated with malloc (filter_string_dup), and the generated code frees it after the call.

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"

static const char *DEFAULT_TRANSIENT[] = {
    "timeout", "timed out", "connection refused", "connection reset", "econnrefused", "econnreset",
    "500 internal server error", "502 bad gateway", "503 service unavailable", "504 gateway timeout",
    "throttl", "rate limit", "too many requests", "429", "temporarily unavailable", "deadlock",
};
static const char *DEFAULT_PERMANENT[] = {
    "validation", "invalid", "schema version", "unknown schema", "unprocessable", "400 bad request", "422",
    "not found", "404", "constraint violation",
};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

// A list of patterns: lowercased, NUL-terminated, owned.
typedef struct {
    char **items;
    size_t len;
} patterns_t;

static patterns_t transient, permanent;
static redrive_filter_types_verdict_t fallback = REDRIVE_FILTER_TYPES_VERDICT_SKIP;

static char *lower_dup(const uint8_t *s, size_t len) {
    char *out = malloc(len + 1);
    if (!out) abort();
    for (size_t i = 0; i < len; i++) out[i] = (char)tolower(s[i]);
    out[len] = '\0';
    return out;
}

static void patterns_clear(patterns_t *p) {
    for (size_t i = 0; i < p->len; i++) free(p->items[i]);
    free(p->items);
    p->items = NULL;
    p->len = 0;
}

static void patterns_push(patterns_t *p, const uint8_t *s, size_t len) {
    p->items = realloc(p->items, (p->len + 1) * sizeof(char *));
    if (!p->items) abort();
    p->items[p->len++] = lower_dup(s, len);
}

static void patterns_defaults(patterns_t *p, const char **defaults, size_t n) {
    patterns_clear(p);
    for (size_t i = 0; i < n; i++) patterns_push(p, (const uint8_t *)defaults[i], strlen(defaults[i]));
}

static bool is_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Comma-separated items, trimmed, empty ones dropped (as the Rust SDK's get_list).
static void patterns_parse(patterns_t *p, const filter_string_t *value) {
    patterns_clear(p);
    size_t start = 0;
    for (size_t i = 0; i <= value->len; i++) {
        if (i < value->len && value->ptr[i] != ',') continue;
        size_t a = start, b = i;
        while (a < b && is_space(value->ptr[a])) a++;
        while (b > a && is_space(value->ptr[b - 1])) b--;
        if (b > a) patterns_push(p, value->ptr + a, b - a);
        start = i + 1;
    }
}

static bool key_is(const filter_string_t *s, const char *key) {
    return s->len == strlen(key) && memcmp(s->ptr, key, s->len) == 0;
}

static void set_error(filter_string_t *err, const char *fmt, const filter_string_t *arg) {
    char buf[512];
    snprintf(buf, sizeof buf, fmt, (int)arg->len, (const char *)arg->ptr);
    filter_string_dup(err, buf);
}

bool exports_filter_init(filter_list_tuple2_string_string_t *config, filter_string_t *err) {
    bool ok = true;
    for (size_t i = 0; i < config->len && ok; i++) {
        const filter_string_t *key = &config->ptr[i].f0;
        if (!key_is(key, "transient") && !key_is(key, "permanent") && !key_is(key, "default")) {
            set_error(err, "unknown config key '%.*s' (known keys: transient, permanent, default)", key);
            ok = false;
        }
    }
    patterns_defaults(&transient, DEFAULT_TRANSIENT, COUNT(DEFAULT_TRANSIENT));
    patterns_defaults(&permanent, DEFAULT_PERMANENT, COUNT(DEFAULT_PERMANENT));
    fallback = REDRIVE_FILTER_TYPES_VERDICT_SKIP;
    for (size_t i = 0; i < config->len && ok; i++) {  // in order: the last value of a key wins
        const filter_string_t *key = &config->ptr[i].f0, *value = &config->ptr[i].f1;
        if (key_is(key, "transient")) {
            patterns_parse(&transient, value);
        } else if (key_is(key, "permanent")) {
            patterns_parse(&permanent, value);
        } else {
            size_t a = 0, b = value->len;
            while (a < b && is_space(value->ptr[a])) a++;
            while (b > a && is_space(value->ptr[b - 1])) b--;
            char *v = lower_dup(value->ptr + a, b - a);
            if (strcmp(v, "replay") == 0) fallback = REDRIVE_FILTER_TYPES_VERDICT_REPLAY;
            else if (strcmp(v, "skip") == 0) fallback = REDRIVE_FILTER_TYPES_VERDICT_SKIP;
            else if (strcmp(v, "discard") == 0) fallback = REDRIVE_FILTER_TYPES_VERDICT_DISCARD;
            else {
                set_error(err, "config key 'default': invalid value '%.*s' (expected one of replay, skip, discard)", value);
                ok = false;
            }
            free(v);
        }
    }
    filter_list_tuple2_string_string_free(config);
    return ok;
}

static const char *pattern_in(const patterns_t *p, const char *haystack) {
    for (size_t i = 0; i < p->len; i++) {
        if (strstr(haystack, p->items[i])) return p->items[i];
    }
    return NULL;
}

static const char *verdict_name(redrive_filter_types_verdict_t v) {
    return v == REDRIVE_FILTER_TYPES_VERDICT_REPLAY ? "replay" : v == REDRIVE_FILTER_TYPES_VERDICT_SKIP ? "skip" : "discard";
}

bool exports_filter_decide(filter_message_t *msg, filter_decision_t *ret, filter_string_t *err) {
    (void)err;
    const filter_option_string_t *texts[] = {&msg->failure.error_text, &msg->failure.error_class, &msg->failure.reason};
    size_t total = 1;
    bool known = false;
    for (size_t i = 0; i < 3; i++) {
        if (!texts[i]->is_some) continue;
        total += texts[i]->val.len + 1;
        for (size_t j = 0; j < texts[i]->val.len; j++) known |= !is_space(texts[i]->val.ptr[j]);
    }
    // The texts, lowercased, joined with newlines. Embedded NUL bytes end the search early: treat them as text.
    char *haystack = malloc(total);
    if (!haystack) abort();
    size_t at = 0;
    for (size_t i = 0; i < 3; i++) {
        if (!texts[i]->is_some) continue;
        if (at > 0) haystack[at++] = '\n';
        for (size_t j = 0; j < texts[i]->val.len; j++) {
            uint8_t c = texts[i]->val.ptr[j];
            haystack[at++] = c ? (char)tolower(c) : ' ';
        }
    }
    haystack[at] = '\0';

    char reason[600];
    const char *kind;
    const char *p;
    if (!known) {
        ret->verdict = fallback;
        snprintf(reason, sizeof reason, "no failure context");
        kind = "no-context";
    } else if ((p = pattern_in(&permanent, haystack))) {
        ret->verdict = REDRIVE_FILTER_TYPES_VERDICT_SKIP;
        snprintf(reason, sizeof reason, "permanent error: matched \"%s\"", p);
        kind = "permanent";
    } else if ((p = pattern_in(&transient, haystack))) {
        ret->verdict = REDRIVE_FILTER_TYPES_VERDICT_REPLAY;
        snprintf(reason, sizeof reason, "transient error: matched \"%s\"", p);
        kind = "transient";
    } else {
        ret->verdict = fallback;
        snprintf(reason, sizeof reason, "unclassified error");
        kind = "unclassified";
    }
    free(haystack);
    filter_string_dup(&ret->reason, reason);
    ret->body.is_some = false;
    ret->attribute_changes.ptr = NULL;
    ret->attribute_changes.len = 0;

    char line[100];
    snprintf(line, sizeof line, "error class: %s -> %s", kind, verdict_name(ret->verdict));
    filter_string_t text;
    filter_string_set(&text, line);  // borrowed: log does not take ownership
    redrive_filter_host_log(REDRIVE_FILTER_TYPES_LOG_LEVEL_INFO, &text);

    filter_message_free(msg);
    return true;
}
