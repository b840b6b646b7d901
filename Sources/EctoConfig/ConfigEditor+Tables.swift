/// Adding, replacing and removing whole `[tunnels.NAME]` tables, keeping every other byte of the
/// file (comments, order, spacing, line endings).
///
/// What belongs to a tunnel's table, for removal and replacement: the comment lines directly above
/// its header (no blank line in between), the header line, every line up to the next table header,
/// except the comment lines directly above that next header (they describe the next table). If the
/// table is the last one, the blank lines before it go too, so the file does not end in blank lines.
extension ConfigEditor {
    /// Appends `table` (the full text of a `[tunnels.NAME]` table, e.g. `TunnelImport.tableText()`) to
    /// `text`, separated by a blank line; with `replace`, an existing table of that name is replaced
    /// in place instead.
    ///
    /// Throws when `text` has TOML syntax errors, when `table` is not exactly one `[tunnels.NAME]`
    /// table named `name`, or when the tunnel exists and `replace` is false (the error names its line).
    public static func addTunnel(
        _ table: String, named name: String, to text: String, replace: Bool = false
    )
        throws(ConfigErrors) -> String
    {
        let file = "<config>"
        let doc = try parsed(text)
        let tableDoc = TOMLParser.parse(table)
        guard tableDoc.errors.isEmpty, tableDoc.root.entries.isEmpty, tableDoc.tables.count == 1,
            tableDoc.tables[0].path == ["tunnels", name]
        else {
            throw ConfigErrors([
                ConfigError(
                    file: file, line: 0, key: "tunnels.\(TOMLTable.quoteKeyIfNeeded(name))",
                    message: "the new text is not exactly one [tunnels.\(TOMLTable.quoteKeyIfNeeded(name))] table")
            ])
        }
        let newline = text.contains("\r\n") ? "\r\n" : "\n"
        var insertion = table.replacingNewlines(with: newline)
        if !insertion.hasSuffix(newline) { insertion += newline }
        var bytes = Array(text.utf8)

        if let existing = doc.table(["tunnels", name]) {
            guard replace else {
                throw ConfigErrors([
                    ConfigError(
                        file: file, line: existing.line, key: "tunnels.\(TOMLTable.quoteKeyIfNeeded(name))",
                        message:
                            "a tunnel named \(TOMLWriter.quote(name)) already exists; remove it first or replace it")
                ])
            }
            let range = tableRange(existing, in: doc, bytes: bytes)
            if range.upperBound < bytes.count { insertion += newline }
            bytes.replaceSubrange(range, with: Array(insertion.utf8))
            return String(decoding: bytes, as: UTF8.self)
        }
        var prefix = ""
        if !bytes.isEmpty {
            if bytes.last != 0x0A { prefix += newline }
            // One blank line between the old content and the new table.
            let endsWithBlankLine = text.hasSuffix(newline + newline) || text == newline
            if !endsWithBlankLine { prefix += newline }
        }
        bytes += Array((prefix + insertion).utf8)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Removes the `[tunnels.NAME]` table (see above for exactly which lines); nothing else changes.
    /// Throws when the text has TOML syntax errors or there is no such tunnel.
    public static func removeTunnel(named name: String, from text: String) throws(ConfigErrors) -> String {
        let doc = try parsed(text)
        guard let table = doc.table(["tunnels", name]) else {
            throw ConfigErrors([
                ConfigError(
                    file: "<config>", line: 0, key: "tunnels.\(TOMLTable.quoteKeyIfNeeded(name))",
                    message: "no [tunnels.\(TOMLTable.quoteKeyIfNeeded(name))] table in the config")
            ])
        }
        var bytes = Array(text.utf8)
        var range = tableRange(table, in: doc, bytes: bytes)
        if range.upperBound == bytes.count {
            // Last table: also drop the blank lines before it.
            var start = range.lowerBound
            while let previous = lineBefore(start, bytes: bytes), isBlank(bytes[previous..<start]) {
                start = previous
            }
            range = start..<range.upperBound
        }
        bytes.removeSubrange(range)
        return String(decoding: bytes, as: UTF8.self)
    }

    // MARK: - Internals

    static func parsed(_ text: String) throws(ConfigErrors) -> TOMLDocument {
        let doc = TOMLParser.parse(text)
        if !doc.errors.isEmpty {
            throw ConfigErrors(
                doc.errors.map { ConfigError(file: "<config>", line: $0.line, column: $0.column, message: $0.message) })
        }
        return doc
    }

    /// The byte range of a table as described in the type's comment.
    static func tableRange(_ table: TOMLTable, in doc: TOMLDocument, bytes: [UInt8]) -> Range<Int> {
        var start = lineStart(table.headerRange.lowerBound, bytes: bytes)
        // Comment lines directly above the header.
        while let previous = lineBefore(start, bytes: bytes), isComment(bytes[previous..<start]) {
            start = previous
        }
        // Up to the next table's header (or the end), minus the comments directly above that header.
        let nextHeader = doc.tables
            .map { lineStart($0.headerRange.lowerBound, bytes: bytes) }
            .filter { $0 > table.headerRange.lowerBound }
            .min()
        guard var end = nextHeader else { return start..<bytes.count }
        while let previous = lineBefore(end, bytes: bytes), previous > start, isComment(bytes[previous..<end]) {
            end = previous
        }
        // Never cut into the table's own content.
        let contentEnd = max(table.headerStatementEnd, table.entries.map(\.statementRange.upperBound).max() ?? 0)
        return start..<max(end, contentEnd)
    }

    static func lineStart(_ offset: Int, bytes: [UInt8]) -> Int {
        var i = offset
        while i > 0 && bytes[i - 1] != 0x0A { i -= 1 }
        return i
    }

    /// The start of the line before the line starting at `start`; nil at the top of the text.
    static func lineBefore(_ start: Int, bytes: [UInt8]) -> Int? {
        guard start > 0 else { return nil }
        return lineStart(start - 1, bytes: bytes)
    }

    static func isBlank(_ line: ArraySlice<UInt8>) -> Bool {
        line.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D || $0 == 0x0A }
    }

    static func isComment(_ line: ArraySlice<UInt8>) -> Bool {
        guard let first = line.first(where: { $0 != 0x20 && $0 != 0x09 }) else { return false }
        return first == UInt8(ascii: "#")
    }
}

extension String {
    /// LF line ends turned into `newline` (CRLF input is normalised first).
    fileprivate func replacingNewlines(with newline: String) -> String {
        let lines = split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.hasSuffix("\r") ? $0.dropLast() : $0
        }
        return lines.joined(separator: newline)
    }
}
