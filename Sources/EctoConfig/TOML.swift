/// A small TOML reader that keeps the position of everything it reads.
///
/// Supported: comments, `[table]` / `[a.b]` headers with bare or quoted keys, `key = value` with bare or
/// quoted keys, basic strings with escapes, literal strings, integers (decimal with `_`, `+`/`-`, and
/// 0x/0o/0b), floats (incl. inf/nan), booleans, arrays (may span lines). Rejected with a clear error:
/// dotted keys, inline tables, arrays of tables, multi-line strings, dates and times.
/// Errors are collected; after an error the parser resumes at the next line.

struct TOMLNode: Equatable {
    enum Value: Equatable {
        case string(String)
        case integer(Int64)
        case float(Double)
        case boolean(Bool)
        case array([TOMLNode])
        /// The value had a syntax error (already reported).
        case invalid
    }

    var value: Value
    var line: Int
    var column: Int
    /// UTF-8 byte offsets of the value in the source text (for strings: including the quotes).
    var range: Range<Int>

    var typeName: String {
        switch value {
        case .string: return "string"
        case .integer: return "integer"
        case .float: return "float"
        case .boolean: return "boolean"
        case .array: return "array"
        case .invalid: return "invalid value"
        }
    }
}

struct TOMLEntry: Equatable {
    var key: String
    var line: Int
    var column: Int
    var keyRange: Range<Int>
    var value: TOMLNode
    /// From the start of the line (indentation included) to just after the line break that ends the
    /// statement (or the end of the text).
    var statementRange: Range<Int>
}

struct TOMLTable: Equatable {
    /// Empty for the root table.
    var path: [String]
    /// 0 for the root table.
    var line: Int
    var column: Int
    var headerRange: Range<Int>
    /// Just after the line break ending the header line (or the end of the text).
    var headerStatementEnd: Int
    var entries: [TOMLEntry]

    var dottedName: String { path.map(TOMLTable.quoteKeyIfNeeded).joined(separator: ".") }

    func entry(_ key: String) -> TOMLEntry? { entries.first { $0.key == key } }

    static func isBareKey(_ k: String) -> Bool {
        !k.isEmpty && k.utf8.allSatisfy(TOMLParser.isBareKeyByte)
    }

    static func quoteKeyIfNeeded(_ k: String) -> String {
        isBareKey(k) ? k : TOMLWriter.quote(k)
    }
}

struct TOMLSyntaxError: Equatable {
    var line: Int
    var column: Int
    var message: String
}

struct TOMLDocument: Equatable {
    var root: TOMLTable
    /// Explicitly defined tables in file order (a duplicate header is reported and not listed).
    var tables: [TOMLTable]
    var errors: [TOMLSyntaxError]

    func table(_ path: [String]) -> TOMLTable? { tables.first { $0.path == path } }
}

enum TOMLWriter {
    /// A TOML basic string with the given content.
    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 || u.value == 0x7F {
                    out += "\\u" + HostSyntax.hex(u.value, width: 4)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}

struct TOMLParser {
    private struct Failure: Error {
        var line: Int
        var column: Int
        var message: String
    }

    private let bytes: [UInt8]
    private var pos = 0
    private var line = 1
    private var lineStart = 0
    private var errors: [TOMLSyntaxError] = []
    /// Lines already reported by the byte-level checks; the parser skips statements starting on them.
    private var badLines: Set<Int>

    /// Parses `text`. `badLines` are lines already known to be broken (e.g. invalid UTF-8 in the file).
    static func parse(_ text: String, badLines: Set<Int> = []) -> TOMLDocument {
        var p = TOMLParser(bytes: Array(text.utf8), badLines: badLines)
        return p.parseDocument()
    }

    private init(bytes: [UInt8], badLines: Set<Int>) {
        self.bytes = bytes
        self.badLines = badLines
    }

    static func isBareKeyByte(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x5F
    }

    /// 1-based column (in Unicode scalars) of byte `offset` on the line starting at `start`.
    static func column(in bytes: [UInt8], lineStart start: Int, offset: Int) -> Int {
        var c = 1
        var i = start
        while i < offset && i < bytes.count {
            if bytes[i] & 0xC0 != 0x80 { c += 1 }
            i += 1
        }
        // A continuation byte at `offset` itself would be mid-character; not counted.
        return c
    }

    // MARK: - Byte-level checks

    /// Control characters (other than tab and CRLF/LF line breaks) are not allowed anywhere in TOML.
    private mutating func checkControlCharacters() {
        var ln = 1
        var start = 0
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b == 0x0A {
                ln += 1
                start = i + 1
            } else if (b < 0x20 && b != 0x09 && !(b == 0x0D && i + 1 < bytes.count && bytes[i + 1] == 0x0A))
                || b == 0x7F
            {
                if !badLines.contains(ln) {
                    let what =
                        b == 0x0D
                        ? "a carriage return (U+000D) not followed by a line feed"
                        : "the control character U+\(HostSyntax.hex(UInt32(b), width: 4))"
                    errors.append(
                        TOMLSyntaxError(
                            line: ln, column: Self.column(in: bytes, lineStart: start, offset: i),
                            message: "\(what) is not allowed (use an escape such as \\t or \\u0001 inside a string)"))
                    badLines.insert(ln)
                }
            }
            i += 1
        }
    }

    // MARK: - Document

    private mutating func parseDocument() -> TOMLDocument {
        checkControlCharacters()
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) {
            pos = 3
            lineStart = 3
        }
        var root = TOMLTable(path: [], line: 0, column: 0, headerRange: 0..<0, headerStatementEnd: 0, entries: [])
        var tables: [TOMLTable] = []
        // Where entries go: nil = root, -1 = discard (after a broken or duplicate header), else index.
        var current: Int? = nil
        var definedAt: [[String]: Int] = [:]

        func add(_ entry: TOMLEntry, errors: inout [TOMLSyntaxError]) {
            var existing: TOMLEntry?
            switch current {
            case nil: existing = root.entry(entry.key)
            case .some(-1): return
            case let i?: existing = tables[i].entry(entry.key)
            }
            if let existing {
                errors.append(
                    TOMLSyntaxError(
                        line: entry.line, column: entry.column,
                        message:
                            "duplicate key \(TOMLTable.quoteKeyIfNeeded(entry.key)) (first defined at line \(existing.line))"
                    ))
                return
            }
            switch current {
            case nil: root.entries.append(entry)
            case let i?: tables[i].entries.append(entry)
            }
        }

        while pos < bytes.count {
            skipSpaces()
            guard pos < bytes.count else { break }
            if atNewline() {
                consumeNewline()
                continue
            }
            if bytes[pos] == UInt8(ascii: "#") {
                skipComment()
                continue
            }
            if badLines.contains(line) {
                skipToNextLine()
                continue
            }
            let statementStart = lineStart
            if bytes[pos] == UInt8(ascii: "[") {
                let headerLine = line
                let headerColumn = currentColumn()
                let headerStart = pos
                do {
                    let path = try parseHeader()
                    let headerEnd = pos
                    try expectLineEnd(after: "table header")
                    if let first = definedAt[path] {
                        errors.append(
                            TOMLSyntaxError(
                                line: headerLine, column: headerColumn,
                                message:
                                    "duplicate table [\(path.map(TOMLTable.quoteKeyIfNeeded).joined(separator: "."))] (first defined at line \(first))"
                            ))
                        current = -1
                    } else {
                        definedAt[path] = headerLine
                        tables.append(
                            TOMLTable(
                                path: path, line: headerLine, column: headerColumn,
                                headerRange: headerStart..<headerEnd,
                                headerStatementEnd: pos, entries: []))
                        current = tables.count - 1
                    }
                } catch {
                    record(error)
                    current = -1
                    skipToNextLine()
                }
                continue
            }
            // key = value
            do {
                let keyLine = line
                let keyColumn = currentColumn()
                let keyStart = pos
                let key = try parseKey()
                let keyEnd = pos
                skipSpaces()
                if pos < bytes.count && bytes[pos] == UInt8(ascii: ".") {
                    throw fail("dotted keys are not supported; put the key in a [table] of its own")
                }
                guard pos < bytes.count, bytes[pos] == UInt8(ascii: "=") else {
                    throw fail("expected \"=\" after key \(TOMLTable.quoteKeyIfNeeded(key))")
                }
                pos += 1
                skipSpaces()
                let valueStart = pos
                let valueLine = line
                let valueColumn = currentColumn()
                var node: TOMLNode
                var failure: Error?
                do {
                    node = try parseValue()
                } catch {
                    failure = error
                    node = TOMLNode(
                        value: .invalid, line: valueLine, column: valueColumn, range: valueStart..<valueStart)
                }
                if failure == nil {
                    do { try expectLineEnd(after: "value") } catch { failure = error }
                }
                if let failure {
                    record(failure)
                    skipToNextLine()
                }
                add(
                    TOMLEntry(
                        key: key, line: keyLine, column: keyColumn, keyRange: keyStart..<keyEnd, value: node,
                        statementRange: statementStart..<pos),
                    errors: &errors)
            } catch {
                record(error)
                skipToNextLine()
            }
        }
        return TOMLDocument(root: root, tables: tables, errors: errors)
    }

    private mutating func record(_ error: Error) {
        if let f = error as? Failure {
            errors.append(TOMLSyntaxError(line: f.line, column: f.column, message: f.message))
        }
    }

    private func fail(_ message: String, at offset: Int? = nil) -> Failure {
        Failure(
            line: line, column: Self.column(in: bytes, lineStart: lineStart, offset: offset ?? pos), message: message)
    }

    private func currentColumn() -> Int {
        Self.column(in: bytes, lineStart: lineStart, offset: pos)
    }

    // MARK: - Lexical helpers

    private func atNewline() -> Bool {
        guard pos < bytes.count else { return false }
        if bytes[pos] == 0x0A { return true }
        return bytes[pos] == 0x0D && pos + 1 < bytes.count && bytes[pos + 1] == 0x0A
    }

    private mutating func consumeNewline() {
        pos += bytes[pos] == 0x0D ? 2 : 1
        line += 1
        lineStart = pos
    }

    private mutating func skipSpaces() {
        while pos < bytes.count && (bytes[pos] == 0x20 || bytes[pos] == 0x09) { pos += 1 }
    }

    /// Skips a comment up to (not including) the line break.
    private mutating func skipComment() {
        while pos < bytes.count && bytes[pos] != 0x0A {
            if atNewline() { return }
            pos += 1
        }
    }

    private mutating func skipToNextLine() {
        while pos < bytes.count && bytes[pos] != 0x0A { pos += 1 }
        if pos < bytes.count {
            pos += 1
            line += 1
            lineStart = pos
        }
    }

    /// After a statement: optional spaces and comment, then a line break or the end of the text.
    private mutating func expectLineEnd(after what: String) throws {
        skipSpaces()
        guard pos < bytes.count else { return }
        if bytes[pos] == UInt8(ascii: "#") { skipComment() }
        guard pos < bytes.count else { return }
        if atNewline() {
            consumeNewline()
            return
        }
        throw fail("expected the end of the line after the \(what), found \(describeHere())")
    }

    private func describeHere() -> String {
        guard pos < bytes.count else { return "the end of the file" }
        var end = pos + 1
        while end < bytes.count && bytes[end] & 0xC0 == 0x80 { end += 1 }
        let s = String(decoding: bytes[pos..<end], as: UTF8.self)
        return "\"\(s)\""
    }

    private mutating func skipWhitespaceCommentsAndNewlines() {
        while pos < bytes.count {
            if bytes[pos] == 0x20 || bytes[pos] == 0x09 {
                pos += 1
            } else if atNewline() {
                consumeNewline()
            } else if bytes[pos] == UInt8(ascii: "#") {
                skipComment()
            } else {
                return
            }
        }
    }

    // MARK: - Keys and headers

    private mutating func parseHeader() throws -> [String] {
        pos += 1  // [
        if pos < bytes.count && bytes[pos] == UInt8(ascii: "[") {
            throw fail("arrays of tables ([[...]]) are not supported; use [tunnels.NAME] tables", at: pos - 1)
        }
        var path: [String] = []
        while true {
            skipSpaces()
            path.append(try parseKey())
            skipSpaces()
            guard pos < bytes.count else { throw fail("missing \"]\" at the end of the table header") }
            if bytes[pos] == UInt8(ascii: ".") {
                pos += 1
                continue
            }
            if bytes[pos] == UInt8(ascii: "]") {
                pos += 1
                return path
            }
            if atNewline() { throw fail("missing \"]\" at the end of the table header") }
            throw fail("expected \".\" or \"]\" in the table header, found \(describeHere())")
        }
    }

    private mutating func parseKey() throws -> String {
        guard pos < bytes.count, !atNewline() else { throw fail("expected a key") }
        let b = bytes[pos]
        if b == UInt8(ascii: "\"") {
            if startsWith("\"\"\"") { throw fail("multi-line strings cannot be keys") }
            return try parseBasicString()
        }
        if b == UInt8(ascii: "'") {
            if startsWith("'''") { throw fail("multi-line strings cannot be keys") }
            return try parseLiteralString()
        }
        let start = pos
        while pos < bytes.count && Self.isBareKeyByte(bytes[pos]) { pos += 1 }
        if pos == start {
            if b == UInt8(ascii: "=") { throw fail("missing key before \"=\"") }
            throw fail("expected a key (letters, digits, _ and -, or a quoted string), found \(describeHere())")
        }
        return String(decoding: bytes[start..<pos], as: UTF8.self)
    }

    private func startsWith(_ s: String) -> Bool {
        let u = Array(s.utf8)
        return pos + u.count <= bytes.count && Array(bytes[pos..<(pos + u.count)]) == u
    }

    // MARK: - Values

    private mutating func parseValue() throws -> TOMLNode {
        let start = pos
        let valueLine = line
        let col = currentColumn()
        guard pos < bytes.count, !atNewline(), bytes[pos] != UInt8(ascii: "#") else {
            throw fail("missing value")
        }
        let value: TOMLNode.Value
        switch bytes[pos] {
        case UInt8(ascii: "\""):
            if startsWith("\"\"\"") {
                throw fail(
                    "multi-line strings (\"\"\"...\"\"\") are not supported; use a single-line string with \\n escapes")
            }
            value = .string(try parseBasicString())
        case UInt8(ascii: "'"):
            if startsWith("'''") {
                throw fail("multi-line strings ('''...''') are not supported; use a single-line string")
            }
            value = .string(try parseLiteralString())
        case UInt8(ascii: "["):
            value = .array(try parseArray())
        case UInt8(ascii: "{"):
            throw fail("inline tables ({...}) are not supported; use a [table] header")
        default:
            value = try parseBareValue()
        }
        return TOMLNode(value: value, line: valueLine, column: col, range: start..<pos)
    }

    private mutating func parseBasicString() throws -> String {
        pos += 1  // opening quote
        var out: [UInt8] = []
        while true {
            guard pos < bytes.count, bytes[pos] != 0x0A, !atNewline() else {
                throw fail("unterminated string (missing closing \")")
            }
            let b = bytes[pos]
            if b == UInt8(ascii: "\"") {
                pos += 1
                break
            }
            if b == UInt8(ascii: "\\") {
                let escStart = pos
                pos += 1
                guard pos < bytes.count, !atNewline() else {
                    throw fail("unterminated string (missing closing \")")
                }
                let e = bytes[pos]
                pos += 1
                switch e {
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "u"), UInt8(ascii: "U"):
                    let n = e == UInt8(ascii: "u") ? 4 : 8
                    guard pos + n <= bytes.count,
                        let v = UInt32(String(decoding: bytes[pos..<(pos + n)], as: UTF8.self), radix: 16),
                        bytes[pos..<(pos + n)].allSatisfy({ Self.isHexDigit($0) })
                    else {
                        throw fail(
                            "\\\(Character(Unicode.Scalar(e))) must be followed by \(n) hexadecimal digits",
                            at: escStart)
                    }
                    guard let scalar = Unicode.Scalar(v) else {
                        throw fail(
                            "\\\(Character(Unicode.Scalar(e)))\(String(decoding: bytes[pos..<(pos + n)], as: UTF8.self)) is not a Unicode scalar value",
                            at: escStart)
                    }
                    out.append(contentsOf: Array(String(Character(scalar)).utf8))
                    pos += n
                default:
                    var end = pos
                    while end < bytes.count && bytes[end] & 0xC0 == 0x80 { end += 1 }
                    let shown = String(decoding: bytes[(pos - 1)..<end], as: UTF8.self)
                    throw fail(
                        "invalid escape \\\(shown) (allowed: \\\" \\\\ \\n \\t \\r \\b \\f \\uXXXX \\UXXXXXXXX)",
                        at: escStart)
                }
                continue
            }
            if (b < 0x20 && b != 0x09) || b == 0x7F {
                throw fail("control character U+\(HostSyntax.hex(UInt32(b), width: 4)) in string; use an escape")
            }
            out.append(b)
            pos += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    private mutating func parseLiteralString() throws -> String {
        pos += 1
        let start = pos
        while true {
            guard pos < bytes.count, !atNewline(), bytes[pos] != 0x0A else {
                throw fail("unterminated string (missing closing ')")
            }
            let b = bytes[pos]
            if b == UInt8(ascii: "'") { break }
            if (b < 0x20 && b != 0x09) || b == 0x7F {
                throw fail("control character U+\(HostSyntax.hex(UInt32(b), width: 4)) in string")
            }
            pos += 1
        }
        let s = String(decoding: bytes[start..<pos], as: UTF8.self)
        pos += 1
        return s
    }

    private mutating func parseArray() throws -> [TOMLNode] {
        pos += 1  // [
        var items: [TOMLNode] = []
        while true {
            skipWhitespaceCommentsAndNewlines()
            guard pos < bytes.count else { throw fail("unterminated array (missing \"]\")") }
            if bytes[pos] == UInt8(ascii: "]") {
                pos += 1
                return items
            }
            items.append(try parseValue())
            skipWhitespaceCommentsAndNewlines()
            guard pos < bytes.count else { throw fail("unterminated array (missing \"]\")") }
            if bytes[pos] == UInt8(ascii: ",") {
                pos += 1
                continue
            }
            if bytes[pos] == UInt8(ascii: "]") {
                pos += 1
                return items
            }
            throw fail("expected \",\" or \"]\" in array, found \(describeHere())")
        }
    }

    private static func isHexDigit(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66)
    }

    private static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }

    /// true/false, numbers; anything else is an error with a hint.
    private mutating func parseBareValue() throws -> TOMLNode.Value {
        let start = pos
        let stops: Set<UInt8> = [
            0x20, 0x09, 0x0A, 0x0D, UInt8(ascii: ","), UInt8(ascii: "]"), UInt8(ascii: "["),
            UInt8(ascii: "#"), UInt8(ascii: "{"), UInt8(ascii: "}"), UInt8(ascii: "\""), UInt8(ascii: "'"),
        ]
        while pos < bytes.count && !stops.contains(bytes[pos]) { pos += 1 }
        let tok = Array(bytes[start..<pos])
        let text = String(decoding: tok, as: UTF8.self)
        if tok.isEmpty {
            throw fail("expected a value, found \(describeHere())")
        }
        switch text {
        case "true": return .boolean(true)
        case "false": return .boolean(false)
        case "inf", "+inf": return .float(.infinity)
        case "-inf": return .float(-.infinity)
        case "nan", "+nan", "-nan": return .float(.nan)
        default: break
        }
        if let v = try Self.number(tok, fail: { self.fail($0, at: start) }) { return v }
        if Self.looksLikeDateTime(tok) {
            throw fail("dates and times are not supported; use a string", at: start)
        }
        throw fail(
            "invalid value \(text): strings must be quoted (\"\(text)\"); other values are numbers, true, false or [arrays]",
            at: start)
    }

    private static func looksLikeDateTime(_ t: [UInt8]) -> Bool {
        func digits(_ r: Range<Int>) -> Bool { r.upperBound <= t.count && t[r].allSatisfy(isDigit) }
        if t.count >= 10 && digits(0..<4) && t[4] == UInt8(ascii: "-") && digits(5..<7) && t[7] == UInt8(ascii: "-")
            && digits(8..<10)
        {
            return true
        }
        return t.count >= 8 && digits(0..<2) && t[2] == UInt8(ascii: ":") && digits(3..<5) && t[5] == UInt8(ascii: ":")
            && digits(6..<8)
    }

    /// Scans `digit(_?digit)*` starting at `i`; false if there is no digit or an underscore is misplaced.
    private static func scanDigits(_ t: [UInt8], _ i: inout Int, isDigit d: (UInt8) -> Bool = isDigit) -> Bool {
        guard i < t.count, d(t[i]) else { return false }
        i += 1
        while i < t.count {
            if d(t[i]) {
                i += 1
            } else if t[i] == UInt8(ascii: "_") {
                guard i + 1 < t.count, d(t[i + 1]) else { return false }
                i += 2
            } else {
                break
            }
        }
        return true
    }

    /// nil if `t` is not number syntax at all; throws if it is a number with a problem.
    private static func number(_ t: [UInt8], fail: (String) -> Failure) throws -> TOMLNode.Value? {
        let text = String(decoding: t, as: UTF8.self)
        guard let first = t.first, isDigit(first) || first == UInt8(ascii: "+") || first == UInt8(ascii: "-")
        else { return nil }
        // 0x / 0o / 0b
        if t.count > 2 && t[0] == UInt8(ascii: "0") {
            let radix: Int?
            let check: (UInt8) -> Bool
            switch t[1] {
            case UInt8(ascii: "x"):
                radix = 16
                check = isHexDigit
            case UInt8(ascii: "o"):
                radix = 8
                check = { $0 >= 0x30 && $0 <= 0x37 }
            case UInt8(ascii: "b"):
                radix = 2
                check = { $0 == 0x30 || $0 == 0x31 }
            default:
                radix = nil
                check = isDigit
            }
            if let radix {
                var i = 2
                guard scanDigits(t, &i, isDigit: check), i == t.count else {
                    throw fail("invalid number \(text)")
                }
                let digits = String(decoding: t[2...].filter { $0 != UInt8(ascii: "_") }, as: UTF8.self)
                guard let v = Int64(digits, radix: radix) else { throw fail("integer \(text) is out of range") }
                return .integer(v)
            }
        }
        var i = 0
        if t[0] == UInt8(ascii: "+") || t[0] == UInt8(ascii: "-") { i = 1 }
        let intStart = i
        guard scanDigits(t, &i) else {
            if intStart < t.count && isDigit(t[intStart]) { throw fail("invalid number \(text)") }
            return nil
        }
        if t[intStart] == UInt8(ascii: "0") && i - intStart > 1 {
            throw fail("invalid number \(text): leading zeros are not allowed")
        }
        var isFloat = false
        if i < t.count && t[i] == UInt8(ascii: ".") {
            i += 1
            guard scanDigits(t, &i) else { throw fail("invalid number \(text): a digit must follow the decimal point") }
            isFloat = true
        }
        if i < t.count && (t[i] == UInt8(ascii: "e") || t[i] == UInt8(ascii: "E")) {
            i += 1
            if i < t.count && (t[i] == UInt8(ascii: "+") || t[i] == UInt8(ascii: "-")) { i += 1 }
            guard scanDigits(t, &i) else { throw fail("invalid number \(text): bad exponent") }
            isFloat = true
        }
        if i != t.count {
            // e.g. 127.0.0.1:80 or 15s: not a number; let the caller explain.
            return nil
        }
        let clean = String(decoding: t.filter { $0 != UInt8(ascii: "_") }, as: UTF8.self)
        if isFloat {
            guard let d = Double(clean), d.isFinite else { throw fail("float \(text) is out of range") }
            return .float(d)
        }
        guard let v = Int64(clean) else { throw fail("integer \(text) is out of range") }
        return .integer(v)
    }
}
