import Foundation
import Testing
@testable import EctoConfig

@Suite struct JSON5Parsing {
    @Test func everyJSON5Feature() throws {
        let text = """
            // OpenClaw style
            {
              /* block
                 comment */
              gateway: {
                mode: 'remote',
                port: 0x4965,          // hex
                ratio: .5, other: 5., plus: +1,
                big: 1e3, neg: -Infinity, inf: Infinity, nan: NaN,
                "quoted key": "a\\tb",
                $dollar_1: null,
                long: 'line one \\
            line two',
                esc: '\\x41\\u0042\\'\\"\\0',
                list: [1, 2, 3,],
              },
            }
            """
        let v = try JSON5.parse(text)
        let g = try #require(v["gateway"])
        #expect(g["mode"] == .string("remote"))
        #expect(g["port"] == .number(18789))
        #expect(g["ratio"] == .number(0.5))
        #expect(g["other"] == .number(5))
        #expect(g["plus"] == .number(1))
        #expect(g["big"] == .number(1000))
        #expect(g["neg"] == .number(-.infinity))
        #expect(g["inf"] == .number(.infinity))
        #expect(g["nan"]?.numberValue?.isNaN == true)
        #expect(g["quoted key"] == .string("a\tb"))
        #expect(g["$dollar_1"] == .null)
        #expect(g["long"] == .string("line one line two"))
        #expect(g["esc"] == .string("AB'\"\0"))
        #expect(g["list"] == .array([.number(1), .number(2), .number(3)]))
        // Positions of keys.
        let port = try #require(v.member(path: "gateway.port"))
        #expect(port.line == 7)
        #expect(port.column == 5)
    }

    @Test func plainJSONStillWorks() throws {
        let v = try JSON5.parse(#"{"a": [true, false, null, -1.5e-3, "x\u00e9\ud83d\ude00"]}"#)
        #expect(v["a"] == .array([.bool(true), .bool(false), .null, .number(-0.0015), .string("xé😀")]))
    }

    struct Bad: Sendable, CustomTestStringConvertible {
        var text: String
        var line: Int
        var column: Int
        var fragment: String
        var testDescription: String { text }
    }

    @Test(arguments: [
        Bad(text: "{a: 1,\n b: }", line: 2, column: 5, fragment: "expected a value"),
        Bad(text: "{a: 'x", line: 1, column: 7, fragment: "unterminated string (opened at 1:5)"),
        Bad(text: "{a: 1 b: 2}", line: 1, column: 7, fragment: "expected \",\" or \"}\""),
        Bad(text: "{\n  a: yes\n}", line: 2, column: 6, fragment: "strings must be quoted"),
        Bad(text: "[1, 2", line: 1, column: 6, fragment: "unterminated array"),
        Bad(text: "{a: 01}", line: 1, column: 5, fragment: "leading zeros"),
        Bad(text: "{a: 0x}", line: 1, column: 5, fragment: "no digits after 0x"),
        Bad(text: "/* open", line: 1, column: 1, fragment: "unterminated /* comment"),
        Bad(text: "{} {}", line: 1, column: 4, fragment: "after the end of the value"),
        Bad(text: "", line: 1, column: 1, fragment: "empty document"),
        Bad(text: "{a: \"x\ny\"}", line: 1, column: 7, fragment: "line break inside a string"),
        Bad(text: "{a: '\\1'}", line: 1, column: 6, fragment: "octal"),
    ])
    func errorsNameLineAndColumn(_ bad: Bad) {
        do {
            let v = try JSON5.parse(bad.text)
            Issue.record("parsed \(v)")
        } catch {
            #expect(error.line == bad.line, "\(error)")
            #expect(error.column == bad.column, "\(error)")
            #expect(error.message.contains(bad.fragment), "\(error)")
        }
    }

    @Test func deepNestingIsAnErrorNotACrash() {
        let text = String(repeating: "[", count: 1000) + String(repeating: "]", count: 1000)
        #expect(throws: JSON5Error.self) { try JSON5.parse(text) }
    }

    /// The values agree with FoundationEssentials' JSON5 (`JSONDecoder.allowsJSON5`), which this
    /// parser does not replace only because that one has no line numbers.
    @Test func valuesAgreeWithFoundationsJSON5() throws {
        struct Gateway: Decodable, Equatable {
            var mode: String
            var port: Double
            var ratio: Double
            var plus: Double
            var hex: Double
            var list: [Double]
            var quoted: String
            var single: String
            var nothing: String?
        }
        struct Root: Decodable, Equatable { var gateway: Gateway }
        let text = """
            // comment
            {
              gateway: {
                mode: 'remote', /* inline */
                port: 18789, ratio: .5, plus: +1, hex: 0x1F,
                list: [1, 2.5, -3,],
                "quoted": "a\\tb\\u00e9",
                single: 'it\\'s',
                nothing: null,
              },
            }
            """
        let decoder = JSONDecoder()
        decoder.allowsJSON5 = true
        let foundation = try decoder.decode(Root.self, from: Data(text.utf8)).gateway
        let ours = try #require(try JSON5.parse(text)["gateway"])
        #expect(ours["mode"] == .string(foundation.mode))
        #expect(ours["port"] == .number(foundation.port))
        #expect(ours["ratio"] == .number(foundation.ratio))
        #expect(ours["plus"] == .number(foundation.plus))
        #expect(ours["hex"] == .number(foundation.hex))
        #expect(ours["list"] == .array(foundation.list.map { .number($0) }))
        #expect(ours["quoted"] == .string(foundation.quoted))
        #expect(ours["single"] == .string(foundation.single))
        #expect(ours["nothing"] == .null && foundation.nothing == nil)
        // What Foundation cannot say: where each setting is.
        #expect(try JSON5.parse(text).member(path: "gateway.single")?.line == 8)
    }
}
