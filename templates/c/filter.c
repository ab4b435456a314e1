// {{name}}: a redrive filter in C (a WebAssembly component; bindings from wit-bindgen's C generator). It replays
// dead letters whose recorded error looks transient (a timeout, a refused connection, throttling) and skips the
// others.
//
// The contract is the WIT world `filter` in wit/filter.wit; build.sh generates filter.h from it. Memory: the
// arguments of an export belong to you (free them with the generated *_free functions); what you return must be
// allocated with malloc (filter_string_dup), and the generated code frees it.
// Config: transient — comma-separated patterns replacing the default list ({{name}}.wasm?transient=timeout,503).

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"

#define MAX_PATTERNS 32
static char *patterns[MAX_PATTERNS];
static size_t pattern_count;

static void add_pattern(const uint8_t *s, size_t len) {
    while (len > 0 && isspace(*s)) s++, len--;
    while (len > 0 && isspace(s[len - 1])) len--;
    if (len == 0 || pattern_count == MAX_PATTERNS) return;
    char *p = malloc(len + 1);
    if (!p) abort();
    for (size_t i = 0; i < len; i++) p[i] = (char)tolower(s[i]);
    p[len] = '\0';
    patterns[pattern_count++] = p;
}

bool exports_filter_init(filter_list_tuple2_string_string_t *config, filter_string_t *err) {
    static const char *defaults[] = {"timeout", "timed out", "connection refused", "throttl", "503"};
    for (size_t i = 0; i < sizeof defaults / sizeof *defaults; i++) add_pattern((const uint8_t *)defaults[i], strlen(defaults[i]));
    bool ok = true;
    for (size_t i = 0; i < config->len; i++) {
        filter_string_t *key = &config->ptr[i].f0, *value = &config->ptr[i].f1;
        if (key->len != 9 || memcmp(key->ptr, "transient", 9) != 0) {
            char text[300];
            snprintf(text, sizeof text, "unknown config key '%.*s' (known keys: transient)", (int)key->len, (char *)key->ptr);
            filter_string_dup(err, text);
            ok = false;
            break;
        }
        for (size_t j = 0; j < pattern_count; j++) free(patterns[j]);
        pattern_count = 0;
        size_t start = 0;
        for (size_t j = 0; j <= value->len; j++) {
            if (j == value->len || value->ptr[j] == ',') {
                add_pattern(value->ptr + start, j - start);
                start = j + 1;
            }
        }
    }
    filter_list_tuple2_string_string_free(config);
    return ok;
}

bool exports_filter_decide(filter_message_t *msg, filter_decision_t *ret, filter_string_t *err) {
    (void)err;
    // The error text and class, lowercased, in one NUL-terminated string.
    filter_option_string_t *texts[] = {&msg->failure.error_text, &msg->failure.error_class};
    size_t total = 3, at = 0;
    for (int i = 0; i < 2; i++) total += texts[i]->is_some ? texts[i]->val.len : 0;
    char *text = malloc(total);
    if (!text) abort();
    for (int i = 0; i < 2; i++) {
        if (!texts[i]->is_some) continue;
        for (size_t j = 0; j < texts[i]->val.len; j++) text[at++] = (char)(texts[i]->val.ptr[j] ? tolower(texts[i]->val.ptr[j]) : ' ');
        text[at++] = '\n';
    }
    text[at] = '\0';

    const char *match = NULL;
    for (size_t i = 0; i < pattern_count && !match; i++) {
        if (strstr(text, patterns[i])) match = patterns[i];
    }
    free(text);
    char reason[300];
    if (match) {
        ret->verdict = REDRIVE_FILTER_TYPES_VERDICT_REPLAY;
        snprintf(reason, sizeof reason, "transient: %s", match);
    } else {
        ret->verdict = REDRIVE_FILTER_TYPES_VERDICT_SKIP;
        snprintf(reason, sizeof reason, "not a transient error");
    }
    filter_string_dup(&ret->reason, reason);
    ret->body.is_some = false;
    ret->attribute_changes.ptr = NULL;
    ret->attribute_changes.len = 0;

    char line[300];
    snprintf(line, sizeof line, "%.*s -> %s", (int)msg->id.len, (char *)msg->id.ptr, match ? "replay" : "skip");
    filter_string_t log_text;
    filter_string_set(&log_text, line);  // borrowed: log does not take ownership
    redrive_filter_host_log(REDRIVE_FILTER_TYPES_LOG_LEVEL_INFO, &log_text);

    filter_message_free(msg);
    return true;
}
