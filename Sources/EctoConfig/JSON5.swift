/// A JSON5 reader (https://spec.json5.org), enough for OpenClaw's `openclaw.json`.
///
/// Accepted beyond JSON: `//` and `/* */` comments, trailing commas in objects and arrays, unquoted
/// identifier keys (`$`, `_`, letters, digits, `\uXXXX` escapes), single-quoted strings, escapes
/// `\' \v \0 \xHH` and backslash-newline line continuations in strings, hexadecimal numbers
/// (`0x1F`), a leading or trailing decimal point (`.5`, `5.`), an explicit `+` sign, `Infinity`,
/// `-Infinity` and `NaN`. Errors name the line and column (1-based, in Unicode scalars).
///
/// Why not FoundationEssentials' `JSONDecoder` with `allowsJSON5` (issue 14 asked): it parses the
/// same syntax, but it gives neither the line of each member nor a line:column for errors, and
/// the import needs both: every setting it takes is reported with its `file:line` (`import
/// openclaw`'s table notes, the daemon's `token_source` in status, e.g. `gateway.remote.token
/// (~/.openclaw/openclaw.json:12)`), and a broken file is reported as `file:line: column: what`.
/// `JSON5Tests` checks the values against `JSONDecoder.allowsJSON5` on the same documents, and
/// the positions and errors on their own.

/// A parsed JSON5 value. Objects keep their members in file order, each with its position.
public indirect enum JSON5Value: Sendable, Equatable {
    case null
    case bool(Bool)
    /// Every JSON5 number is a double (hexadecimal integers included).
    case number(Double)
    case string(String)
    case array([JSON5Value])
    case object([JSON5Member])

    /// The member `key` of an object (the last one if the key is repeated, as JavaScript does);
    /// nil for other values.
    public subscript(key: String) -> JSON5Value? { member(key)?.value }

    /// The member `key` with its position; nil if absent or not an object.
    public func member(_ key: String) -> JSON5Member? {
        guard case .object(let members) = self else { return nil }
        return members.last { $0.key == key }
    }

    /// The member at a dotted path such as `gateway.remote.url`.
    public func member(path: String) -> JSON5Member? {
        var current: JSON5Value = self
        var found: JSON5Member?
        for part in path.split(separator: ".") {
            guard let m = current.member(String(part)) else { return nil }
            found = m
            current = m.value
        }
        return found
    }

    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    public var numberValue: Double? { if case .number(let d) = self { return d } else { return nil } }
    public var boolValue: Bool? { if case .bool(let b) = self { return b } else { return nil } }

    /// The name of the value's type, for messages ("string", "number", ...).
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .number: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }
}

/// One `key: value` of an object, with the position of its key.
public struct JSON5Member: Sendable, Equatable {
    public var key: String
    public var value: JSON5Value
    /// 1-based line of the key.
    public var line: Int
    /// 1-based column of the key, in Unicode scalars.
    public var column: Int

    public init(key: String, value: JSON5Value, line: Int, column: Int) {
        self.key = key
        self.value = value
        self.line = line
        self.column = column
    }
}

/// A JSON5 syntax error: `line:column: message`.
public struct JSON5Error: Error, Sendable, Equatable, CustomStringConvertible {
    public var line: Int
    public var column: Int
    public var message: String

    public init(line: Int, column: Int, message: String) {
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String { "\(line):\(column): \(message)" }
}

public enum JSON5 {
    /// Parses one JSON5 document (a single value, surrounded by optional whitespace and comments).
    public static func parse(_ text: String) throws(JSON5Error) -> JSON5Value {
        var p = JSON5Parser(text)
        return try p.document()
    }
}

private struct JSON5Parser {
    let s: [Unicode.Scalar]
    var i = 0
    var line = 1
    var lineStart = 0
    /// Nesting limit, so a hostile file cannot overflow the stack.
    var depth = 0
    static let maxDepth = 256

    init(_ text: String) {
        s = Array(text.unicodeScalars)
    }

    var column: Int { i - lineStart + 1 }

    func fail(_ message: String, line: Int? = nil, column: Int? = nil) -> JSON5Error {
        JSON5Error(line: line ?? self.line, column: column ?? self.column, message: message)
    }

    var peek: Unicode.Scalar? { i < s.count ? s[i] : nil }

    static func isLineTerminator(_ c: Unicode.Scalar) -> Bool {
        c == "\n" || c == "\r" || c == "\u{2028}" || c == "\u{2029}"
    }

    static func isSpace(_ c: Unicode.Scalar) -> Bool {
        switch c {
        case " ", "\t", "\u{0B}", "\u{0C}", "\u{A0}", "\u{FEFF}": return true
        default: return c.properties.generalCategory == .spaceSeparator
        }
    }

    /// Advances over one scalar, keeping line and column (CRLF counts as one line break).
    mutating func advance() {
        let c = s[i]
        i += 1
        if Self.isLineTerminator(c) {
            if c == "\r" && i < s.count && s[i] == "\n" { i += 1 }
            line += 1
            lineStart = i
        }
    }

    mutating func skipTrivia() throws(JSON5Error) {
        while let c = peek {
            if Self.isSpace(c) || Self.isLineTerminator(c) {
                advance()
            } else if c == "/" && i + 1 < s.count && s[i + 1] == "/" {
                while let d = peek, !Self.isLineTerminator(d) { i += 1 }
            } else if c == "/" && i + 1 < s.count && s[i + 1] == "*" {
                let (l, col) = (line, column)
                i += 2
                var closed = false
                while i < s.count {
                    if s[i] == "*" && i + 1 < s.count && s[i + 1] == "/" {
                        i += 2
                        closed = true
                        break
                    }
                    advance()
                }
                if !closed { throw fail("unterminated /* comment", line: l, column: col) }
            } else if c == "/" {
                throw fail("unexpected \"/\" (comments start with // or /*)")
            } else {
                return
            }
        }
    }

    mutating func document() throws(JSON5Error) -> JSON5Value {
        try skipTrivia()
        guard peek != nil else { throw fail("empty document: expected a value") }
        let v = try value()
        try skipTrivia()
        if let c = peek { throw fail("unexpected \(Self.show(c)) after the end of the value") }
        return v
    }

    static func show(_ c: Unicode.Scalar) -> String {
        if c.value < 0x20 || c.value == 0x7F {
            return "control character U+\(String(c.value, radix: 16, uppercase: true))"
        }
        return "\"\(Character(c))\""
    }

    mutating func value() throws(JSON5Error) -> JSON5Value {
        guard let c = peek else { throw fail("unexpected end of input: expected a value") }
        switch c {
        case "{": return try object()
        case "[": return try array()
        case "\"", "'": return .string(try string())
        case "-", "+", ".", "0"..."9": return .number(try number())
        default:
            if Self.isIdentifierStart(c) {
                let (l, col) = (line, column)
                let word = try identifier()
                switch word {
                case "true": return .bool(true)
                case "false": return .bool(false)
                case "null": return .null
                case "Infinity": return .number(.infinity)
                case "NaN": return .number(.nan)
                default:
                    throw fail("unexpected word \"\(word)\": strings must be quoted", line: l, column: col)
                }
            }
            throw fail("unexpected \(Self.show(c)): expected a value")
        }
    }

    mutating func enter() throws(JSON5Error) {
        depth += 1
        if depth > Self.maxDepth { throw fail("nested more than \(Self.maxDepth) levels deep") }
    }

    mutating func object() throws(JSON5Error) -> JSON5Value {
        try enter()
        defer { depth -= 1 }
        let (l, col) = (line, column)
        i += 1  // {
        var members: [JSON5Member] = []
        while true {
            try skipTrivia()
            guard let c = peek else { throw fail("unterminated object (opened at \(l):\(col)): expected \"}\"") }
            if c == "}" {
                i += 1
                return .object(members)
            }
            let (kl, kc) = (line, column)
            let key: String
            if c == "\"" || c == "'" {
                key = try string()
            } else if Self.isIdentifierStart(c) || c == "\\" {
                key = try identifier()
            } else {
                throw fail("unexpected \(Self.show(c)): expected a key (a name or a quoted string) or \"}\"")
            }
            try skipTrivia()
            guard peek == ":" else {
                throw fail("expected \":\" after key \"\(key)\"")
            }
            i += 1
            try skipTrivia()
            let v = try value()
            members.append(JSON5Member(key: key, value: v, line: kl, column: kc))
            try skipTrivia()
            switch peek {
            case ","?: i += 1
            case "}"?: continue
            case nil: throw fail("unterminated object (opened at \(l):\(col)): expected \",\" or \"}\"")
            case let d?: throw fail("unexpected \(Self.show(d)): expected \",\" or \"}\" after the value of \"\(key)\"")
            }
        }
    }

    mutating func array() throws(JSON5Error) -> JSON5Value {
        try enter()
        defer { depth -= 1 }
        let (l, col) = (line, column)
        i += 1  // [
        var items: [JSON5Value] = []
        while true {
            try skipTrivia()
            guard let c = peek else { throw fail("unterminated array (opened at \(l):\(col)): expected \"]\"") }
            if c == "]" {
                i += 1
                return .array(items)
            }
            items.append(try value())
            try skipTrivia()
            switch peek {
            case ","?: i += 1
            case "]"?: continue
            case nil: throw fail("unterminated array (opened at \(l):\(col)): expected \",\" or \"]\"")
            case let d?: throw fail("unexpected \(Self.show(d)): expected \",\" or \"]\"")
            }
        }
    }

    static func isIdentifierStart(_ c: Unicode.Scalar) -> Bool {
        c == "$" || c == "_" || c.properties.isAlphabetic
    }

    static func isIdentifierPart(_ c: Unicode.Scalar) -> Bool {
        isIdentifierStart(c) || c.properties.numericType != nil || c == "\u{200C}" || c == "\u{200D}"
            || c.properties.generalCategory == .nonspacingMark || c.properties.generalCategory == .spacingMark
            || c.properties.generalCategory == .connectorPunctuation
    }

    mutating func identifier() throws(JSON5Error) -> String {
        var out = String.UnicodeScalarView()
        while let c = peek {
            var scalar = c
            let (l, col) = (line, column)
            if c == "\\" {
                guard i + 1 < s.count, s[i + 1] == "u" else { throw fail("only \\u escapes are allowed in names") }
                i += 2
                scalar = try hexScalar(digits: 4, line: l, column: col)
            } else {
                i += 1
            }
            let ok = out.isEmpty ? Self.isIdentifierStart(scalar) : Self.isIdentifierPart(scalar)
            if !ok {
                if c == "\\" { throw fail("\(Self.show(scalar)) is not allowed in a name", line: l, column: col) }
                i -= 1
                break
            }
            out.append(scalar)
        }
        return String(out)
    }

    mutating func hexScalar(digits: Int, line l: Int, column col: Int) throws(JSON5Error) -> Unicode.Scalar {
        var v: UInt32 = 0
        for _ in 0..<digits {
            guard let c = peek, let d = Self.hexValue(c) else {
                throw fail("invalid escape: expected \(digits) hexadecimal digits", line: l, column: col)
            }
            v = v << 4 | d
            i += 1
        }
        guard let scalar = Unicode.Scalar(v) else {
            throw fail(
                "invalid escape: U+\(String(v, radix: 16, uppercase: true)) is not a character", line: l, column: col)
        }
        return scalar
    }

    static func hexValue(_ c: Unicode.Scalar) -> UInt32? {
        switch c {
        case "0"..."9": return c.value - 0x30
        case "a"..."f": return c.value - 0x61 + 10
        case "A"..."F": return c.value - 0x41 + 10
        default: return nil
        }
    }

    mutating func string() throws(JSON5Error) -> String {
        let quote = s[i]
        let (l, col) = (line, column)
        i += 1
        var out = String.UnicodeScalarView()
        var pendingHigh: (UInt32, Int, Int)?
        func flushHigh(_ out: inout String.UnicodeScalarView) {
            if pendingHigh != nil {
                out.append("\u{FFFD}")
                pendingHigh = nil
            }
        }
        while true {
            guard let c = peek else {
                throw fail("unterminated string (opened at \(l):\(col))")
            }
            if c == quote {
                i += 1
                flushHigh(&out)
                return String(out)
            }
            if c == "\n" || c == "\r" {
                throw fail(
                    "unterminated string (opened at \(l):\(col)): a line break inside a string must be escaped with \\")
            }
            if c != "\\" {
                flushHigh(&out)
                out.append(c)
                i += 1
                continue
            }
            let (el, ec) = (line, column)
            i += 1
            guard let e = peek else { throw fail("unterminated string (opened at \(l):\(col))") }
            if Self.isLineTerminator(e) {
                advance()  // line continuation: backslash + line break add nothing
                continue
            }
            i += 1
            var scalar: Unicode.Scalar
            switch e {
            case "b": scalar = "\u{08}"
            case "f": scalar = "\u{0C}"
            case "n": scalar = "\n"
            case "r": scalar = "\r"
            case "t": scalar = "\t"
            case "v": scalar = "\u{0B}"
            case "0":
                if let d = peek, ("0"..."9").contains(d) {
                    throw fail(
                        "invalid escape \\0 followed by a digit (octal escapes are not allowed)", line: el, column: ec)
                }
                scalar = "\u{0}"
            case "1"..."9":
                throw fail("invalid escape \\\(Character(e)) (octal escapes are not allowed)", line: el, column: ec)
            case "x":
                scalar = try hexScalar(digits: 2, line: el, column: ec)
            case "u":
                var v: UInt32 = 0
                for _ in 0..<4 {
                    guard let h = peek, let d = Self.hexValue(h) else {
                        throw fail("invalid escape: expected 4 hexadecimal digits after \\u", line: el, column: ec)
                    }
                    v = v << 4 | d
                    i += 1
                }
                if (0xD800...0xDBFF).contains(v) {
                    flushHigh(&out)
                    pendingHigh = (v, el, ec)
                    continue
                }
                if (0xDC00...0xDFFF).contains(v), let (high, _, _) = pendingHigh {
                    pendingHigh = nil
                    out.append(Unicode.Scalar(0x10000 + ((high - 0xD800) << 10) + (v - 0xDC00))!)
                    continue
                }
                scalar = Unicode.Scalar(v) ?? "\u{FFFD}"
            default:
                scalar = e  // \" \' \\ \/ and any other character stand for themselves
            }
            flushHigh(&out)
            out.append(scalar)
        }
    }

    mutating func number() throws(JSON5Error) -> Double {
        let (l, col) = (line, column)
        var sign = 1.0
        if peek == "+" || peek == "-" {
            if peek == "-" { sign = -1 }
            i += 1
        }
        guard let c = peek else { throw fail("unexpected end of input in a number", line: l, column: col) }
        if Self.isIdentifierStart(c) {
            let word = try identifier()
            if word == "Infinity" { return sign * .infinity }
            if word == "NaN" { return .nan }
            throw fail("invalid number: \"\(word)\"", line: l, column: col)
        }
        if c == "0", i + 1 < s.count, s[i + 1] == "x" || s[i + 1] == "X" {
            i += 2
            var v: Double = 0
            var digits = 0
            while let h = peek, let d = Self.hexValue(h) {
                v = v * 16 + Double(d)
                digits += 1
                i += 1
            }
            if digits == 0 { throw fail("invalid hexadecimal number: no digits after 0x", line: l, column: col) }
            try endOfNumber(l, col)
            return sign * v
        }
        var text = ""
        var intDigits = 0
        while let d = peek, ("0"..."9").contains(d) {
            text.unicodeScalars.append(d)
            intDigits += 1
            i += 1
        }
        if intDigits > 1 && text.hasPrefix("0") {
            throw fail("invalid number: leading zeros are not allowed", line: l, column: col)
        }
        var fracDigits = 0
        if peek == "." {
            text += "."
            i += 1
            while let d = peek, ("0"..."9").contains(d) {
                text.unicodeScalars.append(d)
                fracDigits += 1
                i += 1
            }
        }
        if intDigits == 0 && fracDigits == 0 {
            throw fail("invalid number: expected digits", line: l, column: col)
        }
        if peek == "e" || peek == "E" {
            if text.hasSuffix(".") { text += "0" }
            text += "e"
            i += 1
            if peek == "+" || peek == "-" {
                text.unicodeScalars.append(peek!)
                i += 1
            }
            var expDigits = 0
            while let d = peek, ("0"..."9").contains(d) {
                text.unicodeScalars.append(d)
                expDigits += 1
                i += 1
            }
            if expDigits == 0 { throw fail("invalid number: expected digits after the exponent", line: l, column: col) }
        }
        try endOfNumber(l, col)
        if text.hasPrefix(".") { text = "0" + text }
        if text.hasSuffix(".") { text += "0" }
        guard let v = Double(text) else { throw fail("invalid number \"\(text)\"", line: l, column: col) }
        return sign * v
    }

    func endOfNumber(_ l: Int, _ col: Int) throws(JSON5Error) {
        if let c = peek, Self.isIdentifierPart(c) {
            throw fail("invalid number: unexpected \(Self.show(c)) after the digits", line: l, column: col)
        }
    }
}
