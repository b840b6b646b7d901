import Testing
@testable import EctoConfig

@Suite struct TunnelTableEditing {
    static let original = """
        # ecto-tunnel config

        [defaults]
        keepalive_interval = 15   # seconds

        # the main gateway
        [tunnels.gateway]           # the main one
        target = "ops@gw.example.net:22"
        local = "127.0.0.1:18789"
        remote = "127.0.0.1:18789"
        # keepalive_count_max = 5

        # a comment about other
        [tunnels.other]
        target = 'other.example.net'
        local = "127.0.0.1:2000"
        remote = "127.0.0.1:3000"

        """

    static let newTable = """
        # imported from Host new in ~/.ssh/config
        [tunnels.new]
        target = "new.example.net"
        local = "127.0.0.1:4000"
        remote = "127.0.0.1:4000"

        """

    @Test func removeTakesExactlyOneTable() throws {
        let out = try ConfigEditor.removeTunnel(named: "gateway", from: Self.original)
        #expect(
            out == """
                # ecto-tunnel config

                [defaults]
                keepalive_interval = 15   # seconds

                # a comment about other
                [tunnels.other]
                target = 'other.example.net'
                local = "127.0.0.1:2000"
                remote = "127.0.0.1:3000"

                """)
        #expect(try parseConfig(out).tunnels.map(\.name) == ["other"])
    }

    @Test func removeTheLastTableLeavesNoTrailingBlankLines() throws {
        let out = try ConfigEditor.removeTunnel(named: "other", from: Self.original)
        #expect(out.hasSuffix("remote = \"127.0.0.1:18789\"\n# keepalive_count_max = 5\n"))
        #expect(out.hasPrefix("# ecto-tunnel config\n\n[defaults]\n"))
        #expect(try parseConfig(out).tunnels.map(\.name) == ["gateway"])
    }

    @Test func removeUnknownTunnelIsAnError() {
        #expect(throws: ConfigErrors.self) { try ConfigEditor.removeTunnel(named: "nope", from: Self.original) }
    }

    @Test func addAppendsAfterABlankLine() throws {
        let out = try ConfigEditor.addTunnel(Self.newTable, named: "new", to: Self.original)
        #expect(out == Self.original + "\n" + Self.newTable)
        #expect(try parseConfig(out).tunnels.map(\.name) == ["gateway", "other", "new"])
        // Adding then removing gives the original back.
        #expect(try ConfigEditor.removeTunnel(named: "new", from: out) == Self.original)
    }

    @Test func addToTextWithoutFinalNewlineAndToEmptyText() throws {
        let out = try ConfigEditor.addTunnel(Self.newTable, named: "new", to: "[defaults]\nuser = \"x\"")
        #expect(out == "[defaults]\nuser = \"x\"\n\n" + Self.newTable)
        #expect(try ConfigEditor.addTunnel(Self.newTable, named: "new", to: "") == Self.newTable)
    }

    @Test func addExistingNeedsReplace() throws {
        let replacement =
            "[tunnels.gateway]\ntarget = \"gw2.example.net\"\nlocal = \"127.0.0.1:18789\"\nremote = \"127.0.0.1:18789\"\n"
        do {
            _ = try ConfigEditor.addTunnel(replacement, named: "gateway", to: Self.original)
            Issue.record("replaced without being asked")
        } catch {
            #expect(error.errors.first?.line == 7)
            #expect(error.errors.first?.message.contains("already exists") == true)
        }
        let out = try ConfigEditor.addTunnel(replacement, named: "gateway", to: Self.original, replace: true)
        #expect(
            out == """
                # ecto-tunnel config

                [defaults]
                keepalive_interval = 15   # seconds

                [tunnels.gateway]
                target = "gw2.example.net"
                local = "127.0.0.1:18789"
                remote = "127.0.0.1:18789"

                # a comment about other
                [tunnels.other]
                target = 'other.example.net'
                local = "127.0.0.1:2000"
                remote = "127.0.0.1:3000"

                """)
        #expect(try parseConfig(out).tunnels[0].target.host == "gw2.example.net")
    }

    @Test func crlfFilesStayCRLF() throws {
        let crlf = Self.original.replacingOnceAll("\n", "\r\n")
        let out = try ConfigEditor.addTunnel(Self.newTable, named: "new", to: crlf)
        #expect(!out.replacingOnceAll("\r\n", "").contains("\n"))
        #expect(try ConfigEditor.removeTunnel(named: "new", from: out) == crlf)
    }

    @Test func tableTextMustBeOneMatchingTable() {
        #expect(throws: ConfigErrors.self) {
            try ConfigEditor.addTunnel("[tunnels.x]\nlocal = \"127.0.0.1:1\"\n", named: "y", to: "")
        }
        #expect(throws: ConfigErrors.self) {
            try ConfigEditor.addTunnel("[tunnels.y]\n[tunnels.z]\n", named: "y", to: "")
        }
        #expect(throws: ConfigErrors.self) { try ConfigEditor.addTunnel(Self.newTable, named: "new", to: "[broken") }
    }
}

extension String {
    fileprivate func replacingOnceAll(_ a: String, _ b: String) -> String {
        split(separator: a, omittingEmptySubsequences: false).joined(separator: b)
    }
}
