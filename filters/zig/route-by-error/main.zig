//! route-by-error in Zig, as a command-profile redrive filter: a WASI preview-1 program that reads JSON
//! requests on stdin, one per line, and answers each with one JSON line on stdout
//! (guest-sdk/wit/command.schema.json). Same decisions and reasons as the Rust version in
//! filters/route-by-error: a permanent pattern in the failure text -> skip; else a transient one -> replay;
//! no failure text -> the `default` verdict ("no failure context"); no match -> `default` ("unclassified error").
//! Lowercasing is ASCII-only (std.ascii): the default patterns are ASCII.
//!
//! Build: ./build.sh OUT.wasm (zig build-exe main.zig -target wasm32-wasi -O ReleaseFast -fstrip; ReleaseFast
//! measured 2.6x faster per message than ReleaseSmall; 86 KB against 70 KB)

const std = @import("std");

const contract = "redrive:filter@0.1.0";

const default_transient = [_][]const u8{
    "timeout",                   "timed out",              "connection refused",      "connection reset",
    "econnrefused",              "econnreset",             "500 internal server error", "502 bad gateway",
    "503 service unavailable",   "504 gateway timeout",    "throttl",                 "rate limit",
    "too many requests",         "429",                    "temporarily unavailable", "deadlock",
};

const default_permanent = [_][]const u8{
    "validation", "invalid", "schema version", "unknown schema", "unprocessable", "400 bad request", "422",
    "not found",  "404",     "constraint violation",
};

/// The filter's configuration, built by `init`. Slices live in `config_arena`.
const Filter = struct {
    transient: []const []const u8 = &default_transient,
    permanent: []const []const u8 = &default_permanent,
    fallback: []const u8 = "skip",
};

var config_arena = std.heap.ArenaAllocator.init(std.heap.wasm_allocator);
var filter: ?Filter = null;

pub fn main() !void {
    const stdin = std.io.getStdIn().reader();
    var buffered = std.io.bufferedReader(stdin);
    const reader = buffered.reader();
    const stdout = std.io.getStdOut().writer();
    const stderr = std.io.getStdErr().writer();

    var line = std.ArrayList(u8).init(std.heap.wasm_allocator);
    defer line.deinit();
    while (true) {
        line.clearRetainingCapacity();
        var at_end = false;
        reader.streamUntilDelimiter(line.writer(), '\n', null) catch |err| switch (err) {
            error.EndOfStream => at_end = true,
            else => return err,
        };
        if (std.mem.trim(u8, line.items, " \t\r").len > 0) {
            var request_arena = std.heap.ArenaAllocator.init(std.heap.wasm_allocator);
            defer request_arena.deinit();
            var answer = std.ArrayList(u8).init(request_arena.allocator());
            handle(request_arena.allocator(), line.items, answer.writer(), stderr) catch |err| {
                answer.clearRetainingCapacity();
                try answer.writer().print("{{\"error\":\"internal error: {s}\"}}", .{@errorName(err)});
            };
            try answer.append('\n');
            try stdout.writeAll(answer.items); // unbuffered: one write per answer
        }
        if (at_end) return;
    }
}

fn handle(alloc: std.mem.Allocator, line: []const u8, out: anytype, log: anytype) !void {
    const parsed = std.json.parseFromSliceLeaky(std.json.Value, alloc, line, .{}) catch {
        return out.writeAll("{\"error\":\"not a JSON request\"}");
    };
    if (parsed != .object) return out.writeAll("{\"error\":\"a request must be a JSON object\"}");
    const request = parsed.object;
    const given = stringField(request, "contract") orelse "";
    if (!std.mem.eql(u8, given, contract)) {
        try out.writeAll("{\"error\":");
        try std.json.stringify(try std.fmt.allocPrint(alloc, "this filter speaks {s}, not {s}", .{ contract, given }), .{}, out);
        return out.writeAll("}");
    }
    const call = stringField(request, "call") orelse "";
    if (std.mem.eql(u8, call, "init")) {
        const config = request.get("config") orelse std.json.Value{ .null = {} };
        if (try init(config)) |problem| {
            try out.writeAll("{\"error\":");
            try std.json.stringify(problem, .{}, out);
            return out.writeAll("}");
        }
        return out.writeAll("{\"ok\":true}");
    }
    if (std.mem.eql(u8, call, "decide")) {
        const f = filter orelse return out.writeAll("{\"error\":\"decide before a successful init\"}");
        const message = request.get("message") orelse return out.writeAll("{\"error\":\"decide without a message\"}");
        const failure = if (message == .object) message.object.get("failure") else null;
        const d = try decide(alloc, f, failure);
        try log.print("info: error class: {s} -> {s}\n", .{ d.class, d.verdict });
        try out.writeAll("{\"verdict\":");
        try std.json.stringify(d.verdict, .{}, out);
        try out.writeAll(",\"reason\":");
        try std.json.stringify(d.reason, .{}, out);
        return out.writeAll("}");
    }
    return out.writeAll("{\"error\":\"unknown call\"}");
}

fn stringField(object: std.json.ObjectMap, key: []const u8) ?[]const u8 {
    const value = object.get(key) orelse return null;
    return if (value == .string) value.string else null;
}

/// Read the configuration; returns the refusal text, or null when accepted.
fn init(config: std.json.Value) !?[]const u8 {
    _ = config_arena.reset(.free_all);
    const alloc = config_arena.allocator();
    var f = Filter{};
    const pairs: []std.json.Value = if (config == .array) config.array.items else &.{};
    for (pairs) |pair| {
        const key = pairString(pair, 0);
        if (!(std.mem.eql(u8, key, "transient") or std.mem.eql(u8, key, "permanent") or std.mem.eql(u8, key, "default"))) {
            return try std.fmt.allocPrint(alloc, "unknown config key '{s}' (known keys: transient, permanent, default)", .{key});
        }
    }
    for (pairs) |pair| {
        const key = pairString(pair, 0);
        const value = pairString(pair, 1);
        if (std.mem.eql(u8, key, "transient")) {
            f.transient = try splitList(alloc, value);
        } else if (std.mem.eql(u8, key, "permanent")) {
            f.permanent = try splitList(alloc, value);
        } else {
            const trimmed = std.mem.trim(u8, value, " \t\r\n");
            var found = false;
            for ([_][]const u8{ "replay", "skip", "discard" }) |verdict| {
                if (std.ascii.eqlIgnoreCase(trimmed, verdict)) {
                    f.fallback = verdict;
                    found = true;
                }
            }
            if (!found) {
                return try std.fmt.allocPrint(alloc, "config key 'default': invalid value '{s}' (expected one of replay, skip, discard)", .{value});
            }
        }
    }
    filter = f;
    return null;
}

fn pairString(pair: std.json.Value, index: usize) []const u8 {
    if (pair != .array or pair.array.items.len <= index) return "";
    const item = pair.array.items[index];
    return if (item == .string) item.string else "";
}

/// Comma-separated, items trimmed and lowercased, empty items dropped.
fn splitList(alloc: std.mem.Allocator, value: []const u8) ![]const []const u8 {
    var items = std.ArrayList([]const u8).init(alloc);
    var parts = std.mem.splitScalar(u8, value, ',');
    while (parts.next()) |part| {
        const item = std.mem.trim(u8, part, " \t\r\n");
        if (item.len > 0) try items.append(try std.ascii.allocLowerString(alloc, item));
    }
    return items.toOwnedSlice();
}

const Decided = struct { verdict: []const u8, reason: []const u8, class: []const u8 };

fn decide(alloc: std.mem.Allocator, f: Filter, failure: ?std.json.Value) !Decided {
    var haystack = std.ArrayList(u8).init(alloc);
    var known = false;
    var present: usize = 0;
    for ([_][]const u8{ "error_text", "error_class", "reason" }) |key| {
        const text = if (failure) |fv| (if (fv == .object) stringField(fv.object, key) else null) else null;
        if (text) |t| {
            if (present > 0) try haystack.append('\n'); // joined with newlines, as in the Rust filter
            present += 1;
            const lowered = try std.ascii.allocLowerString(alloc, t);
            try haystack.appendSlice(lowered);
            if (std.mem.trim(u8, t, " \t\r\n").len > 0) known = true;
        }
    }
    if (!known) return .{ .verdict = f.fallback, .reason = "no failure context", .class = "no-context" };
    for (f.permanent) |p| {
        if (std.mem.indexOf(u8, haystack.items, p) != null) {
            return .{ .verdict = "skip", .reason = try std.fmt.allocPrint(alloc, "permanent error: matched \"{s}\"", .{p}), .class = "permanent" };
        }
    }
    for (f.transient) |p| {
        if (std.mem.indexOf(u8, haystack.items, p) != null) {
            return .{ .verdict = "replay", .reason = try std.fmt.allocPrint(alloc, "transient error: matched \"{s}\"", .{p}), .class = "transient" };
        }
    }
    return .{ .verdict = f.fallback, .reason = "unclassified error", .class = "unclassified" };
}
