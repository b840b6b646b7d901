import Testing
@testable import EctoConfig

@Suite struct TOMLParsing {
    func value(_ doc: TOMLDocument, _ table: [String], _ key: String) -> TOMLNode.Value? {
        (table.isEmpty ? doc.root : doc.table(table))?.entry(key)?.value.value
    }

    @Test func scalarsAndComments() {
        let text = """
            # leading comment

            [t]   # comment after a header
            s = "hello"  # comment after a value
            lit = 'C:\\no\\escapes "here"'
            i = 42
            neg = -17
            pos = +5
            big = 1_000_000
            hex = 0xDEAD_beef
            oct = 0o755
            bin = 0b1010
            f = 3.25
            e = -2e3
            e2 = 6.02E+23
            fi = 1_000.5
            inf = -inf
            yes = true
            no = false
            """
        let doc = TOMLParser.parse(text)
        #expect(doc.errors == [])
        let t = ["t"]
        #expect(value(doc, t, "s") == .string("hello"))
        #expect(value(doc, t, "lit") == .string("C:\\no\\escapes \"here\""))
        #expect(value(doc, t, "i") == .integer(42))
        #expect(value(doc, t, "neg") == .integer(-17))
        #expect(value(doc, t, "pos") == .integer(5))
        #expect(value(doc, t, "big") == .integer(1_000_000))
        #expect(value(doc, t, "hex") == .integer(0xDEAD_BEEF))
        #expect(value(doc, t, "oct") == .integer(0o755))
        #expect(value(doc, t, "bin") == .integer(10))
        #expect(value(doc, t, "f") == .float(3.25))
        #expect(value(doc, t, "e") == .float(-2000))
        #expect(value(doc, t, "e2") == .float(6.02e23))
        #expect(value(doc, t, "fi") == .float(1000.5))
        #expect(value(doc, t, "inf") == .float(-.infinity))
        #expect(value(doc, t, "yes") == .boolean(true))
        #expect(value(doc, t, "no") == .boolean(false))
    }

    @Test func escapes() {
        let text = #"s = "q\" b\\ n\n t\t r\r b\b f\f \u00e9 \U0001F600 é""#
        let doc = TOMLParser.parse(text)
        #expect(doc.errors == [])
        #expect(value(doc, [], "s") == .string("q\" b\\ n\n t\t r\r b\u{08} f\u{0C} é 😀 é"))
    }

    @Test func quotedKeysAndHeaders() {
        let text = """
            "quoted key" = 1
            'lit key' = 2
            [ tunnels . "my gw" ]
            "a.b" = 3
            ["x"."y".z]
            """
        let doc = TOMLParser.parse(text)
        #expect(doc.errors == [])
        #expect(value(doc, [], "quoted key") == .integer(1))
        #expect(value(doc, [], "lit key") == .integer(2))
        #expect(value(doc, ["tunnels", "my gw"], "a.b") == .integer(3))
        #expect(doc.table(["x", "y", "z"])?.line == 5)
        #expect(doc.table(["tunnels", "my gw"])?.dottedName == "tunnels.\"my gw\"")
    }

    @Test func arraysOverLines() {
        let text = """
            a = [
              1,   # one
              2,

              "three", # trailing comma is fine
            ]
            b = []
            c = [[1, 2], ['x']]
            after = true
            """
        let doc = TOMLParser.parse(text)
        #expect(doc.errors == [])
        guard case .array(let a)? = value(doc, [], "a") else {
            Issue.record("a is not an array")
            return
        }
        #expect(a.map(\.value) == [.integer(1), .integer(2), .string("three")])
        #expect(a.map(\.line) == [2, 3, 5])
        #expect(value(doc, [], "b") == .array([]))
        guard case .array(let c)? = value(doc, [], "c"), c.count == 2 else {
            Issue.record("c is not a 2-element array")
            return
        }
        #expect(doc.root.entry("after")?.line == 9)
        // The statement of `a` spans its lines up to and including the closing bracket's line break.
        let entryA = doc.root.entry("a")!
        let bytes = Array(text.utf8)
        #expect(String(decoding: bytes[entryA.statementRange], as: UTF8.self).hasSuffix("]\n"))
    }

    @Test func positionsAndRanges() {
        let text = "# c\n[tunnels.gw]\n  target = \"ops@gw\"   # x\nn = 15\nlist = [1,\n 2]\n"
        let doc = TOMLParser.parse(text)
        #expect(doc.errors == [])
        let t = doc.table(["tunnels", "gw"])!
        #expect(t.line == 2)
        let bytes = Array(text.utf8)
        #expect(String(decoding: bytes[t.headerRange], as: UTF8.self) == "[tunnels.gw]")
        let target = t.entry("target")!
        #expect(target.line == 3)
        #expect(target.column == 3)
        #expect(target.value.line == 3)
        #expect(target.value.column == 12)
        #expect(String(decoding: bytes[target.value.range], as: UTF8.self) == "\"ops@gw\"")
        let n = t.entry("n")!
        #expect(n.line == 4)
        #expect(String(decoding: bytes[n.value.range], as: UTF8.self) == "15")
        let list = t.entry("list")!
        #expect(String(decoding: bytes[list.value.range], as: UTF8.self) == "[1,\n 2]")
    }

    @Test func crlfLineEndings() {
        let text = "[a]\r\nx = 1\r\n# c\r\ny = \"s\"\r\n"
        let doc = TOMLParser.parse(text)
        #expect(doc.errors == [])
        #expect(doc.table(["a"])?.entry("y")?.line == 4)
        #expect(value(doc, ["a"], "y") == .string("s"))
    }

    @Test(arguments: [
        ("s = \"\"\"multi\"\"\"", 1, 5, "multi-line strings"),
        ("s = '''multi'''", 1, 5, "multi-line strings"),
        ("t = { a = 1 }", 1, 5, "inline tables"),
        ("a.b = 1", 1, 2, "dotted keys"),
        ("[[tunnels]]", 1, 1, "arrays of tables"),
        ("s = \"open", 1, 10, "unterminated string"),
        ("s = 'open", 1, 10, "unterminated string"),
        (#"s = "bad \q""#, 1, 10, "invalid escape \\q"),
        (#"s = "\u12""#, 1, 6, "4 hexadecimal digits"),
        (#"s = "\uD800""#, 1, 6, "not a Unicode scalar"),
        ("n = 0123", 1, 5, "leading zeros"),
        ("n = 1__0", 1, 5, "invalid number"),
        ("n = 99999999999999999999", 1, 5, "out of range"),
        ("n = 1.", 1, 5, "digit must follow"),
        ("v = hello", 1, 5, "strings must be quoted"),
        ("v = 127.0.0.1:80", 1, 5, "strings must be quoted"),
        ("d = 2024-01-02", 1, 5, "dates and times"),
        ("v = ", 1, 5, "missing value"),
        ("v = 1 2", 1, 7, "expected the end of the line"),
        ("key value", 1, 5, "expected \"=\""),
        ("= 1", 1, 1, "missing key"),
        ("[a", 1, 3, "missing \"]\""),
        ("[a b]", 1, 4, "expected \".\" or \"]\""),
        ("a = [1 2]", 1, 8, "expected \",\" or \"]\""),
        ("a = [1,", 1, 8, "unterminated array"),
        ("a = \"x\u{01}\"", 1, 7, "U+0001"),
        ("a = 1\rb = 2", 1, 6, "carriage return"),
        ("# comment \u{7F}", 1, 11, "U+007F"),
    ])
    func syntaxErrors(text: String, line: Int, column: Int, fragment: String) {
        let doc = TOMLParser.parse(text)
        #expect(doc.errors.count == 1, "\(doc.errors)")
        guard let e = doc.errors.first else { return }
        #expect(e.line == line, "\(e)")
        #expect(e.column == column, "\(e)")
        #expect(e.message.contains(fragment), "\(e)")
    }

    @Test func duplicates() {
        let text = """
            [a]
            x = 1
            x = 2
            [b]
            [a]
            y = 1
            """
        let doc = TOMLParser.parse(text)
        #expect(doc.errors.count == 2)
        #expect(doc.errors.first?.line == 3)
        #expect(doc.errors.first?.message.contains("duplicate key x (first defined at line 2)") == true)
        #expect(doc.errors.last?.line == 5)
        #expect(doc.errors.last?.message.contains("duplicate table [a] (first defined at line 1)") == true)
        // The first value wins; the duplicate table's keys are not merged.
        #expect(value(doc, ["a"], "x") == .integer(1))
        #expect(doc.table(["a"])?.entry("y") == nil)
    }

    @Test func keepsGoingAfterErrors() {
        let text = """
            a = 1
            b = nope
            c = "unterminated
            d = 4
            [t
            e = 5
            [u]
            f = 6
            """
        let doc = TOMLParser.parse(text)
        #expect(doc.errors.map(\.line) == [2, 3, 5])
        #expect(value(doc, [], "a") == .integer(1))
        #expect(value(doc, [], "b") == .invalid)
        #expect(value(doc, [], "d") == .integer(4))
        // Keys after a broken header do not land in the previous table.
        #expect(doc.root.entry("e") == nil)
        #expect(value(doc, ["u"], "f") == .integer(6))
    }

    @Test func byteOrderMark() {
        let doc = TOMLParser.parse("\u{FEFF}a = 1\n")
        #expect(doc.errors == [])
        #expect(value(doc, [], "a") == .integer(1))
    }

    @Test func quoting() {
        #expect(TOMLWriter.quote("plain") == "\"plain\"")
        #expect(TOMLWriter.quote("a\"b\\c\nd\u{01}") == #""a\"b\\c\nd\u0001""#)
        let text = "s = " + TOMLWriter.quote("x\"y\\z\t\u{7F}é") + "\n"
        #expect(value(TOMLParser.parse(text), [], "s") == .string("x\"y\\z\t\u{7F}é"))
    }
}
