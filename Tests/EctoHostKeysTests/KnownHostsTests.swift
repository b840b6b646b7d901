import Testing
@testable import EctoHostKeys

func fixtureKey(_ name: String) -> HostKey {
    try! HostKey(openSSHLine: Fixtures.key(name).pubLine)
}

/// Line numbers (and marker) from `ssh-keygen -F` headers: "# Host NAME found: line N [CA|REVOKED]".
func parseFindHeaders(_ headers: [String]) -> [(line: Int, marker: KnownHostsFile.Marker?)] {
    headers.map { header in
        let parts = header.split(separator: " ", omittingEmptySubsequences: true)
        let lineIndex = parts.firstIndex(of: "line")! + 1
        let marker: KnownHostsFile.Marker? =
            switch parts.count > lineIndex + 1 ? String(parts[lineIndex + 1]) : "" {
            case "CA": .certAuthority
            case "REVOKED": .revoked
            default: nil
            }
        return (Int(parts[lineIndex])!, marker)
    }
}

/// What `ssh-keygen -F name` selects (hostkeys_foreach with a raw lookup name):
/// every parsed entry whose host field matches `name` as given.
func keygenStyleFind(_ file: KnownHostsFile, _ name: String) -> [(line: Int, marker: KnownHostsFile.Marker?)] {
    file.entries.filter { KnownHostsFile.hostField($0.hostPatterns, matches: name) }.map { ($0.line, $0.marker) }
}

@Suite struct KnownHostsParseTests {
    let file = KnownHostsFile.parse(Fixtures.knownHostsFull, path: "kh_full")

    @Test func entriesAndFields() throws {
        #expect(file.path == "kh_full")
        #expect(file.entries.map(\.line) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 23, 24, 26, 27])
        let byLine = Dictionary(uniqueKeysWithValues: file.entries.map { ($0.line, $0) })
        #expect(byLine[3]?.hostPatterns == "example.com,192.0.2.1")
        #expect(byLine[3]?.comment == "ed1@ecto")
        #expect(byLine[3]?.key == fixtureKey("ked1"))
        #expect(byLine[4]?.comment == nil)
        #expect(byLine[5]?.hostPatterns == "[127.0.0.1]:2222")  // leading whitespace skipped
        #expect(byLine[5]?.comment == "leading whitespace, second algorithm")
        #expect(byLine[5]?.key.algorithm == "ecdsa-sha2-nistp256")
        #expect(byLine[12]?.key.algorithm == "ssh-rsa")
        #expect(byLine[13]?.marker == .revoked)
        #expect(byLine[13]?.hostPatterns == "*")
        #expect(byLine[14]?.marker == .certAuthority)
        #expect(byLine[27]?.marker == nil)
    }

    /// Malformed lines are skipped with a "path:line: …" warning each.
    @Test func warningsCarryLineNumbers() {
        let lines = file.warnings.map { warning -> Int in
            let parts = warning.split(separator: ":")
            #expect(parts[0] == "kh_full")
            #expect(parts.count >= 3 && !parts[2].trimmingPrefix(" ").isEmpty)
            return Int(parts[1]) ?? -1
        }
        // 16: host only, 17: no key, 18: bad base64, 19: unknown marker, 20: type/key
        // mismatch, 21: bad hash salt, 22: unknown key type, 25: two markers.
        #expect(lines == [16, 17, 18, 19, 20, 21, 22, 25])
        #expect(file.warnings[3].contains("@bogus"))
    }

    @Test func commentsBlankAndCRLFLines() throws {
        let ed1 = fixtureKey("ked1")
        let text =
            "\n   \n\t# c\r\n# x\nhost.test \(ed1.openSSHLine)\r\n  \t other.test \(ed1.openSSHLine)   spaced   comment \t\nlast.test \(ed1.openSSHLine)"
        let parsed = KnownHostsFile.parse(text, path: "p")
        #expect(parsed.warnings == [])
        #expect(parsed.entries.map(\.line) == [5, 6, 7])
        #expect(parsed.entries[0].comment == nil)
        #expect(parsed.entries[1].hostPatterns == "other.test")
        #expect(parsed.entries[1].comment == "spaced   comment")
        #expect(parsed.check(host: "last.test", port: 22, key: ed1) == .match(line: 7))
    }

    @Test func emptyText() {
        let parsed = KnownHostsFile.parse("", path: "e")
        #expect(parsed.entries.isEmpty && parsed.warnings.isEmpty)
    }
}

@Suite struct LookupNameTests {
    @Test(arguments: [
        ("example.com", 22, "example.com"),
        ("Example.COM", 22, "example.com"),
        ("127.0.0.1", 2222, "[127.0.0.1]:2222"),
        ("127.0.0.1", 0, "127.0.0.1"),
        ("::1", 22, "::1"),
        ("::1", 2200, "[::1]:2200"),
        ("Host.Test", 443, "[host.test]:443"),
    ])
    func lookupName(host: String, port: Int, expected: String) {
        #expect(KnownHostsFile.lookupName(host: host, port: port) == expected)
    }

    @Test func appendLine() {
        let key = fixtureKey("ked2")
        #expect(KnownHostsFile.line(host: "127.0.0.1", port: 2222, key: key) == "[127.0.0.1]:2222 \(key.openSSHLine)")
        #expect(KnownHostsFile.line(host: "Example.com", port: 22, key: key) == "example.com \(key.openSSHLine)")
    }
}

@Suite struct PatternTests {
    @Test(arguments: [
        ("a.example.com", "*.example.com", 1),
        ("example.com", "*.example.com", 0),
        ("b.example.com", "*.example.com,!b.example.com", -1),
        ("b.example.com", "!b.example.com,*.example.com", -1),
        ("c.example.com", "!b.example.com", 0),
        ("h1.test", "h?.test", 1),
        ("h12.test", "h?.test", 0),
        ("h12.test", "h*.test", 1),
        ("host", "HOST", 1),
        ("[127.0.0.1]:2222", "[127.0.0.1]:2222", 1),
        ("[127.0.0.1]:2222", "127.0.0.1", 0),
        ("127.0.0.1", "[127.0.0.1]:22", 0),
        ("[127.0.0.1]:2222", "[127.0.0.1]:*", 1),
        ("[127.0.0.1]:2222", "*", 1),
        ("abc", "a*b*c", 1),
        ("abxbc", "a*bc", 1),
        ("abxbd", "a*bc", 0),
        ("", "", 0),  // an empty list has no pattern to match
        ("x", "", 0),
        ("x", ",x", 1),
        ("a", "**a**", 1),
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaab", "*a*a*a*a*a*a*c", 0),
    ])
    func matchPatternList(name: String, patterns: String, expected: Int) {
        #expect(KnownHostsFile.matchPatternList(Array(name.utf8), Array(patterns.utf8)) == expected)
    }

    @Test func overlongSubpatternFailsTheList() {
        let long = String(repeating: "x", count: 1100)
        #expect(KnownHostsFile.matchPatternList(Array("a".utf8), Array("a,\(long)".utf8)) == 0)
        #expect(KnownHostsFile.matchPatternList(Array("a".utf8), Array("a,\(long.prefix(1000))".utf8)) == 1)
    }

    @Test func hashedFieldRequiresTwentyByteSalt() {
        #expect(HashedHost(Array("|1|c2FsdA==|AAAA".utf8)[...]) == nil)
        #expect(HashedHost(Array("|2|FGEO/oeg03YTDCZt8b8Pxr3Rtus=|9w7WFqRdLhtwOltfcztcIOBRyMw=".utf8)[...]) == nil)
        #expect(HashedHost(Array("|1|FGEO/oeg03YTDCZt8b8Pxr3Rtus=".utf8)[...]) == nil)
        #expect(HashedHost(Array("|1|FGEO/oeg03YTDCZt8b8Pxr3Rtus=|9w7WFqRdLhtwOltfcztcIOBRyMw=".utf8)[...]) != nil)
    }
}

/// Lookups against the hand-written file agree with `ssh-keygen -F` (recorded output).
@Suite struct SSHKeygenFindAgreementTests {
    @Test(arguments: Fixtures.findFull.map { ($0.key, $0.value) })
    func plainFile(name: String, headers: [String]) {
        let file = KnownHostsFile.parse(Fixtures.knownHostsFull, path: "kh_full")
        var expected = parseFindHeaders(headers)
        // ssh-keygen -F does not decode keys; ssh(1) does and skips lines 18
        // (bad base64) and 20 (key type mismatch), and so do we.
        expected.removeAll { $0.line == 18 || $0.line == 20 }
        let ours = keygenStyleFind(file, name)
        #expect(ours.map(\.line) == expected.map(\.line))
        #expect(ours.map(\.marker) == expected.map(\.marker))
    }

    @Test(arguments: Fixtures.findHashed.map { ($0.key, $0.value) })
    func hashedFile(name: String, headers: [String]) {
        let file = KnownHostsFile.parse(Fixtures.knownHostsHashed, path: "kh_hashed")
        let expected = parseFindHeaders(headers)
        let ours = keygenStyleFind(file, name)
        #expect(ours.map(\.line) == expected.map(\.line))
        #expect(ours.map(\.marker) == expected.map(\.marker))
    }

    @Test func brokenLinesThatKeygenListsAreWarnings() {
        let file = KnownHostsFile.parse(Fixtures.knownHostsFull, path: "kh_full")
        let listed = parseFindHeaders(Fixtures.findFull.first { $0.key == "broken.test" }!.value).map(\.line)
        #expect(listed.contains(18) && listed.contains(20))
        #expect(file.warnings.contains { $0.hasPrefix("kh_full:18: ") })
        #expect(file.warnings.contains { $0.hasPrefix("kh_full:20: ") })
    }

    @Test func fixtureCoversEveryQueryInBothFiles() {
        #expect(Fixtures.findFull.map(\.key) == Fixtures.findHashed.map(\.key))
        #expect(Fixtures.findFull.count >= 20)
    }
}

@Suite struct CheckTests {
    let full = KnownHostsFile.parse(Fixtures.knownHostsFull, path: "kh_full")
    let hashed = KnownHostsFile.parse(Fixtures.knownHostsHashed, path: "kh_hashed")

    let ed1 = fixtureKey("ked1"), ed2 = fixtureKey("ked2"), ed3 = fixtureKey("ked3")
    let ed4 = fixtureKey("ked4"), ed5 = fixtureKey("ked5")
    let ec256 = fixtureKey("kec256"), ec384 = fixtureKey("kec384"), ec521 = fixtureKey("kec521")
    let rsa = fixtureKey("krsa")

    @Test func plainPatterns() {
        #expect(full.check(host: "example.com", port: 22, key: ed1) == .match(line: 3))
        #expect(full.check(host: "192.0.2.1", port: 22, key: ed1) == .match(line: 3))
        #expect(full.check(host: "EXAMPLE.com", port: 22, key: ed1) == .match(line: 3))
        #expect(full.check(host: "example.com", port: 2222, key: ed1) == .notFound)
        #expect(full.check(host: "mixedcase.example.org", port: 22, key: rsa) == .match(line: 12))
        #expect(full.check(host: "MixedCase.Example.ORG", port: 22, key: rsa) == .match(line: 12))
        #expect(full.check(host: "localhost", port: 22, key: ec384) == .match(line: 24))
        #expect(full.check(host: "localhost", port: 2200, key: ec384) == .match(line: 24))
        #expect(full.check(host: "localhost", port: 2201, key: ec384) == .notFound)
    }

    @Test func bracketedPorts() {
        #expect(full.check(host: "127.0.0.1", port: 2222, key: ed2) == .match(line: 4))
        #expect(full.check(host: "127.0.0.1", port: 2222, key: ec256) == .match(line: 5))
        #expect(full.check(host: "127.0.0.1", port: 22, key: ed3) == .match(line: 6))
        // "[127.0.0.1]:22" (line 23) is never the lookup name ssh forms for port 22.
        #expect(
            full.check(host: "127.0.0.1", port: 22, key: ed4)
                == .mismatch(known: [KnownKey(line: 6, key: ed3, sameAlgorithm: true)]))
        #expect(full.check(host: "127.0.0.1", port: 2223, key: ed2) == .notFound)
        #expect(full.check(host: "x.wport.test", port: 2222, key: ec256) == .match(line: 9))
        #expect(full.check(host: "x.wport.test", port: 22, key: ec256) == .notFound)
    }

    @Test func wildcardsAndNegation() {
        #expect(full.check(host: "a.wild.test", port: 22, key: ed4) == .match(line: 7))
        #expect(full.check(host: "A.WILD.TEST", port: 22, key: ed4) == .match(line: 7))
        #expect(full.check(host: "bad.wild.test", port: 22, key: ed4) == .notFound)
        #expect(full.check(host: "wild.test", port: 22, key: ed4) == .notFound)
        #expect(full.check(host: "a.wild.test", port: 2222, key: ed4) == .notFound)
        #expect(
            full.check(host: "h1.q.test", port: 22, key: ed1)
                == .mismatch(known: [KnownKey(line: 8, key: ed5, sameAlgorithm: true)]))
        #expect(full.check(host: "h12.q.test", port: 22, key: ed1) == .notFound)
        #expect(full.check(host: "neg.only.test", port: 22, key: ed2) == .notFound)
    }

    @Test func revokedTakesPrecedenceForAnyHost() {
        // Line 8 (h?.q.test) holds ed5 too, but line 13 revokes it.
        #expect(full.check(host: "h1.q.test", port: 22, key: ed5) == .revoked(line: 13))
        #expect(full.check(host: "unknown.test", port: 2222, key: ed5) == .revoked(line: 13))
        // In the hashed file the revocation is written for "revoked.test" only;
        // it still applies to every host.
        #expect(hashed.check(host: "revoked.test", port: 22, key: ed5) == .revoked(line: 10))
        #expect(hashed.check(host: "example.com", port: 22, key: ed5) == .revoked(line: 10))
        #expect(hashed.check(host: "example.com", port: 22, key: ed1) == .match(line: 1))
    }

    @Test func changedKeySameAlgorithm() {
        #expect(
            full.check(host: "changed.test", port: 22, key: ed2)
                == .mismatch(known: [KnownKey(line: 10, key: ed1, sameAlgorithm: true)]))
    }

    @Test func otherAlgorithmOnly() {
        #expect(
            full.check(host: "otheralg.test", port: 22, key: ed1)
                == .mismatch(known: [KnownKey(line: 11, key: ec521, sameAlgorithm: false)]))
        // Same algorithm name family but different curve is a different algorithm.
        #expect(
            full.check(host: "otheralg.test", port: 22, key: ec256)
                == .mismatch(known: [KnownKey(line: 11, key: ec521, sameAlgorithm: false)]))
    }

    @Test func mismatchListsEveryKnownKey() {
        #expect(
            full.check(host: "127.0.0.1", port: 2222, key: ed3)
                == .mismatch(known: [
                    KnownKey(line: 4, key: ed2, sameAlgorithm: true),
                    KnownKey(line: 5, key: ec256, sameAlgorithm: false),
                ]))
    }

    @Test func certAuthorityLinesNeverMatch() {
        // Line 14: @cert-authority *.ca.test with ed3; line 27: x.ca.test with ed2.
        #expect(full.check(host: "y.ca.test", port: 22, key: ed3) == .notFound)
        #expect(
            full.check(host: "x.ca.test", port: 22, key: ed3)
                == .mismatch(known: [KnownKey(line: 27, key: ed2, sameAlgorithm: true)]))
        #expect(full.check(host: "x.ca.test", port: 22, key: ed2) == .match(line: 27))
        #expect(hashed.check(host: "x.ca.test", port: 22, key: ed3) == .notFound)
    }

    @Test func malformedLinesAreIgnored() {
        #expect(full.check(host: "broken.test", port: 22, key: ed1) == .notFound)
        #expect(full.knownAlgorithms(host: "broken.test", port: 22) == [])
    }

    @Test func hashedHostsAndPorts() {
        #expect(hashed.entries[2].hostPatterns.hasPrefix("|1|"))
        #expect(hashed.warnings == [])
        #expect(hashed.check(host: "192.0.2.1", port: 22, key: ed1) == .match(line: 2))
        #expect(hashed.check(host: "127.0.0.1", port: 2222, key: ed2) == .match(line: 3))
        #expect(hashed.check(host: "127.0.0.1", port: 2222, key: ec256) == .match(line: 4))
        #expect(hashed.check(host: "127.0.0.1", port: 22, key: ed3) == .match(line: 5))
        #expect(
            hashed.check(host: "127.0.0.1", port: 22, key: ed2)
                == .mismatch(known: [KnownKey(line: 5, key: ed3, sameAlgorithm: true)]))
        #expect(hashed.check(host: "127.0.0.1", port: 2223, key: ed2) == .notFound)
        #expect(hashed.check(host: "localhost", port: 2200, key: ec384) == .match(line: 6))
        #expect(hashed.check(host: "localhost", port: 22, key: ec384) == .match(line: 7))
        #expect(hashed.check(host: "localhost", port: 2201, key: ec384) == .notFound)
        // ssh-keygen -H hashed the lowercased name; ssh lowercases before lookup.
        #expect(hashed.check(host: "MixedCase.Example.ORG", port: 22, key: rsa) == .match(line: 8))
        #expect(hashed.check(host: "a.wild.test", port: 22, key: ed4) == .match(line: 9))
        #expect(hashed.check(host: "example.org", port: 22, key: ed1) == .notFound)
    }

    @Test func hashedFileAgreesWithPlainSource() {
        // Every plain (unmarked) host of the pre-hash file finds its key in the hashed file.
        let clean = KnownHostsFile.parse(Fixtures.knownHostsClean, path: "kh_clean")
        var checked = 0
        for entry in clean.entries where entry.marker == nil && !entry.hostPatterns.contains("*") {
            for name in entry.hostPatterns.split(separator: ",") {
                guard case .match(let line) = hashed.check(host: hostPart(name), port: portPart(name), key: entry.key)
                else {
                    Issue.record("\(name) not found in hashed file")
                    continue
                }
                #expect(hashed.entries.first { $0.line == line }!.hostPatterns.hasPrefix("|1|"))
                checked += 1
            }
        }
        #expect(checked == 8)
    }

    @Test func knownAlgorithms() {
        #expect(full.knownAlgorithms(host: "127.0.0.1", port: 2222) == ["ssh-ed25519", "ecdsa-sha2-nistp256"])
        #expect(full.knownAlgorithms(host: "localhost", port: 22) == ["ecdsa-sha2-nistp384"])
        #expect(full.knownAlgorithms(host: "mixedcase.example.org", port: 22) == ["ssh-rsa"])
        #expect(full.knownAlgorithms(host: "x.ca.test", port: 22) == ["ssh-ed25519"])  // CA line not counted
        #expect(full.knownAlgorithms(host: "nowhere.test", port: 22) == [])
        #expect(hashed.knownAlgorithms(host: "127.0.0.1", port: 2222) == ["ssh-ed25519", "ecdsa-sha2-nistp256"])
        let dup = KnownHostsFile.parse(
            "h \(ed1.openSSHLine)\nh \(ec256.openSSHLine)\nh \(ed2.openSSHLine)\n", path: "d")
        #expect(dup.knownAlgorithms(host: "h", port: 22) == ["ssh-ed25519", "ecdsa-sha2-nistp256"])
    }
}

/// "[h]:p" → h, "h" → h.
func hostPart(_ name: Substring) -> String {
    guard name.hasPrefix("["), let close = name.firstIndex(of: "]") else { return String(name) }
    return String(name[name.index(after: name.startIndex)..<close])
}

func portPart(_ name: Substring) -> Int {
    guard name.hasPrefix("["), let colon = name.lastIndex(of: ":") else { return 22 }
    return Int(name[name.index(after: colon)...])!
}
