import Testing
@testable import EctoConfig

@Suite struct Editing {
    static let original = """
        # ecto-tunnel config
        [defaults]
        keepalive_interval = 15   # seconds

        [tunnels.gateway]           # the main one
        target   =   "ops@gw.example.net:22"   # old gateway
        local = "127.0.0.1:18789"
        remote = "127.0.0.1:18789"

        # a comment between tables
        [tunnels.other]
          target = 'other.example.net'
          local = "127.0.0.1:2000"
          remote = "127.0.0.1:3000"
        """

    @Test func replacesOnlyTheValue() throws {
        let out = try ConfigEditor.setValue(
            "deploy@gw2.example.net:2222", forKey: "target", inTunnel: "gateway", in: Self.original)
        let expected = Self.original.replacingOnce(
            "target   =   \"ops@gw.example.net:22\"   # old gateway",
            with: "target   =   \"deploy@gw2.example.net:2222\"   # old gateway")
        #expect(out == expected)
        // Round trip.
        let config = try parseConfig(out)
        #expect(config.tunnels[0].target == SSHTarget(user: "deploy", host: "gw2.example.net", port: 2222))
        #expect(config.tunnels[1].target.host == "other.example.net")
    }

    @Test func removesOneKeyLineOnly() throws {
        let out = try ConfigEditor.removeKey("local", inTunnel: "other", in: Self.original)
        #expect(out == Self.original.replacingOnce("  local = \"127.0.0.1:2000\"\n", with: ""))
        #expect(try ConfigEditor.removeKey("ssh_host", inTunnel: "other", in: Self.original) == Self.original)
        #expect(throws: ConfigErrors.self) { try ConfigEditor.removeKey("local", inTunnel: "nope", in: Self.original) }
    }

    @Test func literalStringIsReplaced() throws {
        let out = try ConfigEditor.setValue("new.example.net", forKey: "target", inTunnel: "other", in: Self.original)
        #expect(out == Self.original.replacingOnce("'other.example.net'", with: "\"new.example.net\""))
        #expect(try parseConfig(out).tunnels[1].target.host == "new.example.net")
    }

    @Test func addsMissingKeyAtEndOfTable() throws {
        let out = try ConfigEditor.setValue(
            "~/.ssh/id_ed25519", forKey: "identity_file", inTunnel: "gateway", in: Self.original)
        let expected = Self.original.replacingOnce(
            "remote = \"127.0.0.1:18789\"\n",
            with: "remote = \"127.0.0.1:18789\"\nidentity_file = \"~/.ssh/id_ed25519\"\n")
        #expect(out == expected)
        #expect(try parseConfig(out).tunnels[0].identityFile == "/home/alice/.ssh/id_ed25519")
    }

    @Test func addedKeyFollowsIndentationAndEndOfFile() throws {
        let out = try ConfigEditor.setValue("u", forKey: "user", inTunnel: "other", in: Self.original)
        #expect(out == Self.original + "\n  user = \"u\"\n")
        #expect(try parseConfig(out).tunnels[1].target.user == "u")
    }

    @Test func emptyTable() throws {
        let text = "[tunnels.a]\n\n[tunnels.b]\n"
        let out = try ConfigEditor.setValue("h", forKey: "target", inTunnel: "a", in: text)
        #expect(out == "[tunnels.a]\ntarget = \"h\"\n\n[tunnels.b]\n")
        let out2 = try ConfigEditor.setValue("h", forKey: "target", inTunnel: "b", in: "[tunnels.b]")
        #expect(out2 == "[tunnels.b]\ntarget = \"h\"\n")
    }

    @Test func quotesAndEscapes() throws {
        let tricky = "a\"b\\c\td\u{1}é"
        let out = try ConfigEditor.setValue(
            tricky, forKey: "identity_passphrase_credential", inTunnel: "gateway", in: Self.original)
        let doc = TOMLParser.parse(out)
        #expect(doc.errors == [])
        #expect(
            doc.table(["tunnels", "gateway"])?.entry("identity_passphrase_credential")?.value.value == .string(tricky))
    }

    @Test func keepsCRLF() throws {
        let text = "[tunnels.a]\r\ntarget = \"x\"\r\nlocal = \"127.0.0.1:1\"\r\n"
        let out = try ConfigEditor.setValue("y.example", forKey: "target", inTunnel: "a", in: text)
        #expect(out == "[tunnels.a]\r\ntarget = \"y.example\"\r\nlocal = \"127.0.0.1:1\"\r\n")
        let added = try ConfigEditor.setValue("r.example:1", forKey: "remote", inTunnel: "a", in: text)
        #expect(added == text + "remote = \"r.example:1\"\r\n")
    }

    @Test func multiLineValueIsReplacedWhole() throws {
        let text = "[tunnels.a]\ntarget = [\n  \"x\",\n] # was an array\nlocal = \"127.0.0.1:1\"\n"
        let out = try ConfigEditor.setValue("h", forKey: "target", inTunnel: "a", in: text)
        #expect(out == "[tunnels.a]\ntarget = \"h\" # was an array\nlocal = \"127.0.0.1:1\"\n")
    }

    @Test func errors() {
        #expect(throws: ConfigErrors.self) {
            try ConfigEditor.setValue("x", forKey: "target", inTunnel: "missing", in: Self.original)
        }
        do {
            _ = try ConfigEditor.setValue("x", forKey: "tagret", inTunnel: "gateway", in: Self.original)
            Issue.record("expected an error")
        } catch {
            #expect(error.errors.first?.message.contains("did you mean target?") == true)
        }
        do {
            _ = try ConfigEditor.setValue("x", forKey: "target", inTunnel: "a", in: "[tunnels.a]\ntarget = nope\n")
            Issue.record("expected an error")
        } catch {
            #expect(error.errors.first?.line == 2)
        }
    }
}

extension String {
    func replacingOnce(_ target: String, with replacement: String) -> String {
        guard let r = range(of: target) else {
            Issue.record("\(target) not found")
            return self
        }
        return replacingCharacters(in: r, with: replacement)
    }
}
