//! {{name}}: a redrive filter in Zig (command profile). It replays dead letters whose recorded error looks
//! transient (a timeout, a refused connection, throttling) and skips the others.
//!
//! redrive runs it as a WASI program: JSON requests arrive on stdin, one per line (first `init` with the
//! configuration, then one `decide` per message); it answers each with one JSON line on stdout. The format is in
//! command.schema.json. Lines written to stderr become the message's log lines.
//!
//! Config: transient — comma-separated patterns replacing the default list ({{name}}.wasm?transient=timeout,503).

const std = @import("std");

var patterns_arena = std.heap.ArenaAllocator.init(std.heap.wasm_allocator);
var patterns: []const []const u8 = &.{ "timeout", "timed out", "connection refused", "throttl", "503" };

pub fn main() !void {
    var buffered = std.io.bufferedReader(std.io.getStdIn().reader());
    const stdout = std.io.getStdOut().writer();
    var line = std.ArrayList(u8).init(std.heap.wasm_allocator);
    while (true) {
        line.clearRetainingCapacity();
        var at_end = false;
        buffered.reader().streamUntilDelimiter(line.writer(), '\n', null) catch |err| switch (err) {
            error.EndOfStream => at_end = true,
            else => return err,
        };
        if (std.mem.trim(u8, line.items, " \t\r").len > 0) {
            var arena = std.heap.ArenaAllocator.init(std.heap.wasm_allocator);
            defer arena.deinit();
            const answer = handle(arena.allocator(), line.items) catch "{\"error\":\"internal error\"}";
            try stdout.print("{s}\n", .{answer});
        }
        if (at_end) return;
    }
}

fn handle(alloc: std.mem.Allocator, line: []const u8) ![]const u8 {
    const request = std.json.parseFromSliceLeaky(std.json.Value, alloc, line, .{}) catch
        return "{\"error\":\"not a JSON request\"}";
    if (request != .object) return "{\"error\":\"not a request object\"}";
    const call = request.object.get("call") orelse return "{\"error\":\"no call\"}";
    if (call == .string and std.mem.eql(u8, call.string, "init")) {
        const config = request.object.get("config") orelse return "{\"ok\":true}";
        if (config != .array) return "{\"ok\":true}";
        for (config.array.items) |pair| {
            const key = pair.array.items[0].string;
            if (!std.mem.eql(u8, key, "transient")) {
                return std.fmt.allocPrint(alloc, "{{\"error\":\"unknown config key '{s}' (known keys: transient)\"}}", .{key});
            }
            var list = std.ArrayList([]const u8).init(patterns_arena.allocator());
            var parts = std.mem.splitScalar(u8, pair.array.items[1].string, ',');
            while (parts.next()) |part| {
                const p = std.mem.trim(u8, part, " \t");
                if (p.len > 0) try list.append(try std.ascii.allocLowerString(patterns_arena.allocator(), p));
            }
            patterns = try list.toOwnedSlice();
        }
        return "{\"ok\":true}";
    }
    // decide: look for a transient pattern in the error text and class (ASCII lowercase).
    const message = request.object.get("message") orelse return "{\"error\":\"no message\"}";
    var haystack = std.ArrayList(u8).init(alloc);
    if (message.object.get("failure")) |failure| {
        for ([_][]const u8{ "error_text", "error_class" }) |key| {
            if (failure.object.get(key)) |text| {
                if (text == .string) {
                    try haystack.appendSlice(try std.ascii.allocLowerString(alloc, text.string));
                    try haystack.append('\n');
                }
            }
        }
    }
    const id = message.object.get("id").?.string;
    for (patterns) |p| {
        if (std.mem.indexOf(u8, haystack.items, p) != null) {
            std.io.getStdErr().writer().print("info: {s} -> replay\n", .{id}) catch {};
            var out = std.ArrayList(u8).init(alloc);
            try out.appendSlice("{\"verdict\":\"replay\",\"reason\":");
            try std.json.stringify(try std.fmt.allocPrint(alloc, "transient: {s}", .{p}), .{}, out.writer());
            try out.append('}');
            return out.items;
        }
    }
    std.io.getStdErr().writer().print("info: {s} -> skip\n", .{id}) catch {};
    return "{\"verdict\":\"skip\",\"reason\":\"not a transient error\"}";
}
