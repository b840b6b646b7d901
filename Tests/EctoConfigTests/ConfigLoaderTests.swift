import Foundation
import Testing
@testable import EctoConfig

@Suite struct GoodConfigs {
    @Test func everyKey() throws {
        var sys = FakeSystem()
        sys.files["/etc/ecto/passphrase"] = "secret\n"
        sys.files["/cfg/keys/gw"] = "KEY\n"
        sys.variables["CREDENTIALS_DIRECTORY"] = "/run/credentials/ecto.service"
        sys.files["/run/credentials/ecto.service/gwpass"] = "secret"
        sys.files["/home/alice/.ssh/config"] = """
            Host office
                HostName office.example.org
                Port 2022
            """
        let text = """
            # ecto-tunnel
            [defaults]
            keepalive_interval = 20
            connect_timeout = "5s"

            [tunnels.gateway]
            target = "ops@gw.example.net:2222"
            user = "deploy"
            local = "127.0.0.1:18789"
            remote = "db.internal:5432"
            identity_file = "keys/gw"
            identity_passphrase_file = "/etc/ecto/passphrase"
            known_hosts = "~/.ssh/known_hosts"
            host_key_policy = "accept-new"
            host_key_fingerprint = "\(goodFingerprint)"
            allow_non_loopback = false
            enabled = false
            keepalive_interval = "1m30s"
            keepalive_count_max = 5
            connect_timeout = 2.5
            backoff_initial = "500ms"
            backoff_max = "2m"
            hold_timeout = 0

            [tunnels.office-v6]
            ssh_host = "office"
            local = "[::1]:8080"
            remote = "[2001:db8::10]:80"
            identity_passphrase_credential = "gwpass"
            identity_file = "~/.ssh/id_ed25519"
            """
        let config = try parseConfig(text, sys)
        #expect(config.path == configPath)
        #expect(config.warnings == [])
        #expect(config.tunnels.count == 2)
        let gw = TunnelConfig(
            name: "gateway",
            target: SSHTarget(user: "deploy", host: "gw.example.net", port: 2222),
            sshHostAlias: nil,
            local: Endpoint(host: "127.0.0.1", port: 18789),
            remote: Endpoint(host: "db.internal", port: 5432),
            identityFile: "/cfg/keys/gw",
            identityPassphraseFile: "/etc/ecto/passphrase",
            identityPassphraseCredential: nil,
            knownHosts: "/home/alice/.ssh/known_hosts",
            hostKeyPolicy: .acceptNew,
            hostKeyFingerprint: goodFingerprint,
            allowNonLoopback: false,
            enabled: false,
            keepaliveInterval: .seconds(90),
            keepaliveCountMax: 5,
            connectTimeout: .milliseconds(2500),
            backoffInitial: .milliseconds(500),
            backoffMax: .seconds(120),
            holdTimeout: .zero,
            line: 6)
        #expect(config.tunnels[0] == gw)
        let office = TunnelConfig(
            name: "office-v6",
            target: SSHTarget(user: "alice", host: "office.example.org", port: 2022),
            sshHostAlias: "office",
            local: Endpoint(host: "::1", port: 8080),
            remote: Endpoint(host: "2001:db8::10", port: 80),
            identityFile: "/home/alice/.ssh/id_ed25519",
            identityPassphraseCredential: "gwpass",
            knownHosts: "/home/alice/.ssh/known_hosts",
            hostKeyPolicy: .strict,
            keepaliveInterval: .seconds(20),
            connectTimeout: .seconds(5),
            line: 25)
        #expect(config.tunnels[1] == office)
    }

    @Test func builtInDefaults() throws {
        let config = try parseConfig("[tunnels.a]\n" + validBody)
        let t = try #require(config.tunnels.first)
        #expect(t.target == SSHTarget(user: "ops", host: "gw.example.net", port: 22))
        #expect(t.knownHosts == "/home/alice/.ssh/known_hosts")
        #expect(t.identityFile == nil)
        #expect(t.hostKeyPolicy == .strict)
        #expect(t.hostKeyFingerprint == nil)
        #expect(t.allowNonLoopback == false)
        #expect(t.enabled == true)
        #expect(t.keepaliveInterval == .seconds(15))
        #expect(t.keepaliveCountMax == 3)
        #expect(t.connectTimeout == .seconds(10))
        #expect(t.backoffInitial == .seconds(1))
        #expect(t.backoffMax == .seconds(60))
        #expect(t.holdTimeout == .seconds(10))
        #expect(t.line == 1)
    }

    @Test func defaultsInheritance() throws {
        var sys = FakeSystem()
        sys.files["/keys/shared"] = "K"
        let text = """
            [defaults]
            user = "svc"
            identity_file = "/keys/shared"
            keepalive_interval = "30s"
            keepalive_count_max = 7
            enabled = false
            host_key_policy = "accept-new"

            [tunnels.a]
            target = "gw.example.net"
            local = "127.0.0.1:1001"
            remote = "127.0.0.1:1"

            [tunnels.b]
            target = "root@gw.example.net"
            local = "127.0.0.1:1002"
            remote = "127.0.0.1:1"
            user = "admin"
            keepalive_count_max = 4
            enabled = true
            keepalive_interval = 0

            [tunnels.c]
            target = "ops@gw.example.net"
            local = "127.0.0.1:1003"
            remote = "127.0.0.1:1"
            """
        let ts = try parseConfig(text, sys).tunnels
        #expect(ts.map(\.name) == ["a", "b", "c"])
        // a: everything from [defaults].
        #expect(ts[0].target.user == "svc")
        #expect(ts[0].identityFile == "/keys/shared")
        #expect(ts[0].keepaliveInterval == .seconds(30))
        #expect(ts[0].keepaliveCountMax == 7)
        #expect(ts[0].enabled == false)
        #expect(ts[0].hostKeyPolicy == .acceptNew)
        // b: the table's own keys win; `user` overrides the user in target; keys it does not set
        // still come from [defaults].
        #expect(ts[1].target.user == "admin")
        #expect(ts[1].keepaliveCountMax == 4)
        #expect(ts[1].enabled == true)
        #expect(ts[1].keepaliveInterval == .zero)
        #expect(ts[1].identityFile == "/keys/shared")
        #expect(ts[1].hostKeyPolicy == .acceptNew)
        // c: the user written in target beats [defaults] user; the rest comes from [defaults].
        #expect(ts[2].target.user == "ops")
        #expect(ts[2].keepaliveCountMax == 7)
        #expect(ts[2].keepaliveInterval == .seconds(30))
        #expect(ts[2].enabled == false)
        #expect(ts[2].line == 23)
    }

    @Test func defaultUserIsLoginName() throws {
        let text = """
            [tunnels.a]
            target = "gw.example.net:2200"
            local = "localhost:9000"
            remote = "10.0.0.1:22"
            """
        let t = try parseConfig(text).tunnels[0]
        #expect(t.target == SSHTarget(user: "alice", host: "gw.example.net", port: 2200))
        #expect(t.target.description == "alice@gw.example.net:2200")
    }

    @Test func nonLoopbackAllowed() throws {
        let text = """
            [defaults]
            allow_non_loopback = true
            [tunnels.a]
            \(validBody.replacingOccurrences(of: "127.0.0.1:18789\"\nremote", with: "0.0.0.0:18789\"\nremote"))
            """
        let t = try parseConfig(text).tunnels[0]
        #expect(t.local == Endpoint(host: "0.0.0.0", port: 18789))
        #expect(t.allowNonLoopback)
    }

    /// libssh2 sends keepalives in whole seconds, 2 at the least: a shorter or fractional
    /// interval is used rounded up, with a warning at its line, so the dead-peer time is computed
    /// from what is really sent.
    @Test func keepaliveIntervalIsRoundedToWhatLibssh2Sends() throws {
        for (value, used) in [("\"1s\"", 2), ("1", 2), ("\"500ms\"", 2), ("\"2500ms\"", 3)] {
            let c = try parseConfig("[tunnels.a]\nkeepalive_interval = \(value)\n\(validBody)\n")
            #expect(c.tunnels[0].keepaliveInterval == .seconds(used), "\(value)")
            #expect(c.warnings.count == 1, "\(value): \(c.warnings)")
            let warning = try #require(c.warnings.first)
            #expect(warning.line == 2)
            #expect(warning.key == "tunnels.a.keepalive_interval")
            #expect(warning.message.contains("is used as \(used)s"), "\(warning.message)")
        }
        for (value, used) in [("0", 0), ("2", 2), ("\"15s\"", 15)] {
            let c = try parseConfig("[tunnels.a]\nkeepalive_interval = \(value)\n\(validBody)\n")
            #expect(c.tunnels[0].keepaliveInterval == .seconds(used), "\(value)")
            #expect(c.warnings == [], "\(value)")
        }
    }

    @Test func emptyTunnelsTableAndEmptyFile() throws {
        let c = try parseConfig("[tunnels]\n# none yet\n")
        #expect(c.tunnels == [])
        #expect(c.warnings.count == 1)
        #expect(c.warnings.first?.message.contains("nothing to forward") == true)
        #expect(try parseConfig("").tunnels == [])
    }

    @Test func fileOrderIsKept() throws {
        var text = ""
        for (i, name) in ["zeta", "alpha", "mid"].enumerated() {
            text +=
                "[tunnels.\(name)]\ntarget = \"h\(i).example\"\nlocal = \"127.0.0.1:\(2000 + i)\"\nremote = \"x.example:1\"\n"
        }
        #expect(try parseConfig(text).tunnels.map(\.name) == ["zeta", "alpha", "mid"])
    }

    @Test func defaultPath() {
        var sys = FakeSystem()
        #expect(ConfigLoader.defaultPath(environment: sys.environment) == "/home/alice/.config/ecto-tunnel/config.toml")
        sys.variables["XDG_CONFIG_HOME"] = "/xdg"
        #expect(ConfigLoader.defaultPath(environment: sys.environment) == "/xdg/ecto-tunnel/config.toml")
        sys.variables["XDG_CONFIG_HOME"] = "relative"
        #expect(ConfigLoader.defaultPath(environment: sys.environment) == "/home/alice/.config/ecto-tunnel/config.toml")
    }
}

@Suite struct StructureErrors {
    @Test func unknownKeyWithSuggestion() {
        expectSingleError(
            "[tunnels.gw]\n\(validBody)\nkeepalive_intervl = 5\n", line: 5, key: "tunnels.gw.keepalive_intervl",
            contains: "did you mean keepalive_interval?")
    }

    @Test func unknownKeyWithoutSuggestion() {
        expectSingleError(
            "[tunnels.gw]\n\(validBody)\ncolour = \"blue\"\n", line: 5, key: "tunnels.gw.colour",
            contains: "unknown key (known keys: target, ssh_host")
    }

    @Test func sessionsParsesWithDefaultAndRange() throws {
        let config = try parseConfig(
            "[defaults]\nsessions = 4\n[tunnels.a]\n\(validBody)\n[tunnels.b]\n\(validBody.replacingOccurrences(of: "18789", with: "18790"))\nsessions = 1\n"
        )
        #expect(config.tunnels[0].sessions == 4)
        #expect(config.tunnels[1].sessions == 1)
        #expect(try parseConfig("[tunnels.a]\n\(validBody)\n").tunnels[0].sessions == 1)
        for bad in ["0", "17", "-1"] {
            expectSingleError(
                "[tunnels.gw]\n\(validBody)\nsessions = \(bad)\n", line: 5, key: "tunnels.gw.sessions",
                contains: "is out of range: must be 1-16")
        }
        expectSingleError(
            "[tunnels.gw]\n\(validBody)\nsessions = \"2\"\n", line: 5, key: "tunnels.gw.sessions", contains: "integer")
    }

    @Test func drainTimeoutParsesWithDefault() throws {
        let config = try parseConfig(
            "[defaults]\ndrain_timeout = \"90s\"\n[tunnels.a]\n\(validBody)\n[tunnels.b]\n\(validBody.replacingOccurrences(of: "18789", with: "18790"))\ndrain_timeout = 0\n"
        )
        #expect(config.tunnels[0].drainTimeout == .seconds(90))
        #expect(config.tunnels[1].drainTimeout == .zero)
        let plain = try parseConfig("[tunnels.a]\n\(validBody)\n")
        #expect(plain.tunnels[0].drainTimeout == .seconds(300))
    }

    @Test func unknownKeyInDefaults() {
        expectSingleError(
            "[defaults]\nconect_timeout = 5\n[tunnels.a]\n\(validBody)\n", line: 2, key: "defaults.conect_timeout",
            contains: "did you mean connect_timeout?")
    }

    @Test func tunnelOnlyKeyInDefaults() {
        expectSingleError(
            "[defaults]\nlocal = \"127.0.0.1:1\"\n[tunnels.a]\n\(validBody)\n", line: 2, key: "defaults.local",
            contains: "cannot be set in [defaults]")
    }

    @Test func topLevelKey() {
        expectSingleError(
            "keepalive_interval = 5\n[tunnels.a]\n\(validBody)\n", line: 1, key: "keepalive_interval",
            contains: "not allowed at the top level")
    }

    @Test func keyInTunnelsTable() {
        expectSingleError(
            "[tunnels]\ntarget = \"x\"\n[tunnels.a]\n\(validBody)\n", line: 2, key: "tunnels.target",
            contains: "not allowed directly in [tunnels]")
    }

    @Test(arguments: [
        ("[tunnel.gw]", "did you mean [tunnels.gw]?"),
        ("[default]", "did you mean [defaults]?"),
        ("[gw]", "did you mean [tunnels.gw]?"),
        ("[tunnels.a.extra]", "cannot be nested"),
        ("[defaults.x]", "cannot be nested"),
    ])
    func unknownTable(header: String, fragment: String) {
        expectSingleError(
            "[tunnels.a]\n\(validBody)\n\(header)\n", line: 5, key: nil, contains: fragment)
    }

    @Test func badTunnelName() {
        expectSingleError(
            "[tunnels.\"my gw\"]\n\(validBody)\n", line: 1, key: "tunnels.\"my gw\"",
            contains: "may only contain letters, digits, _ and -")
    }

    @Test func duplicateKey() {
        let errors = configErrors("[tunnels.a]\n\(validBody)\nlocal = \"127.0.0.1:5\"\n")
        #expect(errors.count == 1)
        #expect(errors.first?.line == 5)
        #expect(errors.first?.column == 1)
        #expect(errors.first?.message == "duplicate key local (first defined at line 3)")
    }

    @Test func duplicateTable() {
        let errors = configErrors("[tunnels.a]\n\(validBody)\n\n[tunnels.a]\n\(validBody)\n")
        #expect(errors.count == 1)
        #expect(errors.first?.line == 6)
        #expect(errors.first?.message == "duplicate table [tunnels.a] (first defined at line 1)")
    }

    @Test func syntaxErrorHasColumnAndDescription() {
        let errors = configErrors("[tunnels.a]\n\(validBody)\nkeepalive_count_max = two\n")
        #expect(errors.count == 1)
        let e = errors.first
        #expect(e?.line == 5)
        #expect(e?.column == 23)
        #expect(e?.key == nil)
        #expect(e?.description.hasPrefix("/cfg/config.toml:5:23: invalid value two") == true)
    }

    @Test func syntaxErrorInRequiredKeyIsNotAlsoMissing() {
        // `local` is present but unquoted: one syntax error, no "missing local".
        let errors = configErrors(
            "[tunnels.a]\ntarget = \"h.example\"\nlocal = 127.0.0.1:80\nremote = \"x.example:1\"\n")
        #expect(errors.count == 1)
        #expect(errors.first?.line == 3)
        #expect(errors.first?.message.contains("strings must be quoted") == true)
    }
}

@Suite struct ValueErrors {
    @Test(arguments: [
        ("enabled = \"yes\"", "tunnels.a.enabled", "expected true or false, got string \"yes\""),
        ("keepalive_count_max = 1.0", "tunnels.a.keepalive_count_max", "expected an integer ≥ 1, got float 1.0"),
        ("keepalive_count_max = 0", "tunnels.a.keepalive_count_max", "0 is too small: must be at least 1"),
        ("keepalive_count_max = -3", "tunnels.a.keepalive_count_max", "-3 is too small: must be at least 1"),
        ("keepalive_count_max = \"3\"", "tunnels.a.keepalive_count_max", "expected an integer ≥ 1, got string \"3\""),
        ("keepalive_interval = \"15 sec\"", "tunnels.a.keepalive_interval", "\"15 sec\" is not a valid duration"),
        ("keepalive_interval = -1", "tunnels.a.keepalive_interval", "-1 is not a valid duration: must not be negative"),
        ("keepalive_interval = true", "tunnels.a.keepalive_interval", "expected a duration"),
        ("connect_timeout = 0", "tunnels.a.connect_timeout", "must be greater than 0"),
        ("hold_timeout = [1, 2]", "tunnels.a.hold_timeout", "got array [1, 2]"),
        ("host_key_policy = \"accept_new\"", "tunnels.a.host_key_policy", "did you mean accept-new?"),
        ("host_key_policy = \"yolo\"", "tunnels.a.host_key_policy", "expected \"strict\" or \"accept-new\""),
        ("host_key_fingerprint = \"SHA256:abc\"", "tunnels.a.host_key_fingerprint", "3 characters after SHA256:"),
        (
            "host_key_fingerprint = \"MD5:aa:bb\"", "tunnels.a.host_key_fingerprint",
            "MD5 fingerprints are not supported"
        ),
        ("host_key_fingerprint = \"\(goodFingerprint)=\"", "tunnels.a.host_key_fingerprint", "padding"),
        (
            "host_key_fingerprint = \"SHA256:\(String(repeating: "x", count: 43))\"", "tunnels.a.host_key_fingerprint",
            "not the base64 of a 32-byte"
        ),
        (
            "host_key_fingerprint = \"SHA256:\(String(repeating: "x", count: 42))!\"", "tunnels.a.host_key_fingerprint",
            "not a base64 character"
        ),
        ("user = \"\"", "tunnels.a.user", "not a valid user name"),
        ("user = \"a b\"", "tunnels.a.user", "not a valid user name"),
        ("identity_file = \"~bob/key\"", "tunnels.a.identity_file", "~user is not supported"),
        (
            "identity_file = 5", "tunnels.a.identity_file",
            "expected a string (a file path) or an array of them, got integer 5"
        ),
        (
            "identity_passphrase_credential = \"a/b\"", "tunnels.a.identity_passphrase_credential",
            "not a valid credential name"
        ),
        ("allow_non_loopback = 1", "tunnels.a.allow_non_loopback", "expected true or false, got integer 1"),
    ])
    func wrongValue(line: String, key: String, fragment: String) {
        expectSingleError("[tunnels.a]\n\(validBody)\n\(line)\n", line: 5, key: key, contains: fragment)
    }

    @Test func addressErrorMessage() {
        let errors = configErrors(
            "[tunnels.gw]\ntarget = \"h.example\"\nremote = \"127.0.0.1:1\"\n\n\n\nlocal = \"127.0.0.1:99999\"\n")
        #expect(errors.count == 1)
        #expect(
            errors.first?.description
                == "/cfg/config.toml:7: tunnels.gw.local: \"127.0.0.1:99999\" is not a valid address: port must be 1-65535"
        )
    }

    @Test(arguments: [
        ("target = \"ops@host:0\"", "tunnels.a.target", "\"ops@host:0\" is not a valid target: port must be 1-65535"),
        ("target = \"::1\"", "tunnels.a.target", "brackets"),
        ("target = \"@host\"", "tunnels.a.target", "empty user"),
        ("remote = \"db.internal\"", "tunnels.a.remote", "missing port"),
        ("remote = \"[fe80::zz]:1\"", "tunnels.a.remote", "not a valid IPv6 address"),
        ("local = \"127.0.0.1\"", "tunnels.a.local", "missing port"),
        ("local = \"300.0.0.1:80\"", "tunnels.a.local", "not a valid IPv4 address"),
    ])
    func badAddress(line: String, key: String, fragment: String) {
        let keyName = String(key.split(separator: ".").last!)
        let body = validBody.split(separator: "\n").filter { !$0.hasPrefix(keyName + " ") }.joined(separator: "\n")
        expectSingleError("[tunnels.a]\n\(body)\n\(line)\n", line: 4, key: key, contains: fragment)
    }

    @Test func localMustBeLoopback() {
        let text = """
            [tunnels.a]
            target = "h.example"
            remote = "127.0.0.1:1"
            local = "0.0.0.0:8080"
            """
        expectSingleError(text, line: 4, key: "tunnels.a.local", contains: "\"0.0.0.0:8080\" is not a loopback address")
        expectSingleError(
            text.replacingOccurrences(of: "0.0.0.0:8080", with: "[::]:8080"), line: 4, key: "tunnels.a.local",
            contains: "\"[::]:8080\" is not a loopback address")
        expectSingleError(
            text.replacingOccurrences(of: "0.0.0.0:8080", with: "myhost.lan:8080"), line: 4, key: "tunnels.a.local",
            contains: "allow_non_loopback = true")
        // allowed per tunnel
        #expect((try? parseConfig(text + "\nallow_non_loopback = true")) != nil)
    }

    @Test func targetAndSSHHost() {
        expectSingleError(
            "[tunnels.a]\n\(validBody)\nssh_host = \"gw\"\n", line: 5, key: "tunnels.a",
            contains: "either target or ssh_host, not both")
        expectSingleError(
            "\n[tunnels.a]\nlocal = \"127.0.0.1:1\"\nremote = \"127.0.0.1:1\"\n", line: 2, key: "tunnels.a.target",
            contains: "missing target")
    }

    @Test func missingRequiredKeys() {
        let errors = configErrors("[tunnels.a]\ntarget = \"h.example\"\n")
        #expect(errors.map(\.key) == ["tunnels.a.local", "tunnels.a.remote"])
        #expect(errors.map(\.line) == [1, 1])
        #expect(errors.first?.message.contains("missing required key local") == true)
    }

    @Test func backoffOrder() {
        expectSingleError(
            "[tunnels.a]\n\(validBody)\nbackoff_initial = \"10s\"\nbackoff_max = 5\n", line: 6,
            key: "tunnels.a.backoff_max",
            contains: "backoff_max (5s) must be at least backoff_initial (10s)")
        // Only backoff_initial set, above the default maximum of 60s.
        expectSingleError(
            "[tunnels.a]\n\(validBody)\nbackoff_initial = \"2m\"\n", line: 5, key: "tunnels.a.backoff_initial",
            contains: "backoff_max (1m) must be at least backoff_initial (2m)")
    }

    @Test func errorFromDefaultsIsReportedOnce() {
        let text = """
            [defaults]
            identity_file = "/nope/key"
            [tunnels.a]
            target = "h.example"
            local = "127.0.0.1:1"
            remote = "127.0.0.1:1"
            [tunnels.b]
            target = "h.example"
            local = "127.0.0.1:2"
            remote = "127.0.0.1:1"
            """
        expectSingleError(text, line: 2, key: "defaults.identity_file", contains: "\"/nope/key\" does not exist")
    }
}

@Suite struct FileErrors {
    @Test func identityFile() {
        var sys = FakeSystem()
        sys.extraDirectories.insert("/keys/dir")
        sys.others.insert("/dev/fifo")
        expectSingleError(
            "[tunnels.a]\n\(validBody)\nidentity_file = \"~/.ssh/missing\"\n", sys, line: 5,
            key: "tunnels.a.identity_file",
            contains: "\"/home/alice/.ssh/missing\" does not exist")
        expectSingleError(
            "[tunnels.a]\n\(validBody)\nidentity_file = \"/keys/dir\"\n", sys, line: 5, key: "tunnels.a.identity_file",
            contains: "is a directory")
        expectSingleError(
            "[tunnels.a]\n\(validBody)\nidentity_passphrase_file = \"/dev/fifo\"\n", sys, line: 5,
            key: "tunnels.a.identity_passphrase_file", contains: "is not a regular file")
    }

    @Test func relativePathsAreRelativeToTheConfigFile() {
        expectSingleError(
            "[tunnels.a]\n\(validBody)\nidentity_file = \"keys/k\"\n", line: 5, key: "tunnels.a.identity_file",
            contains: "\"/cfg/keys/k\" does not exist")
    }

    @Test func knownHostsStrict() {
        var sys = FakeSystem()
        sys.files["/home/alice/.ssh/known_hosts"] = nil
        // The default path, reported at the tunnel header.
        expectSingleError(
            "# x\n[tunnels.a]\n\(validBody)\n", sys, line: 2, key: "tunnels.a.known_hosts",
            contains: "\"/home/alice/.ssh/known_hosts\" does not exist; with host_key_policy = \"strict\"")
        expectSingleError(
            "[tunnels.a]\n\(validBody)\nknown_hosts = \"/etc/ssh/kh\"\n", sys, line: 5, key: "tunnels.a.known_hosts",
            contains: "does not exist")
    }

    @Test func knownHostsAcceptNew() throws {
        var sys = FakeSystem()
        sys.files["/home/alice/.ssh/known_hosts"] = nil
        sys.extraDirectories.insert("/home/alice/.ssh")
        // Missing file but existing directory: fine.
        let c = try parseConfig("[tunnels.a]\n\(validBody)\nhost_key_policy = \"accept-new\"\n", sys)
        #expect(c.tunnels[0].knownHosts == "/home/alice/.ssh/known_hosts")
        expectSingleError(
            "[tunnels.a]\n\(validBody)\nhost_key_policy = \"accept-new\"\nknown_hosts = \"/no/dir/kh\"\n", sys, line: 6,
            key: "tunnels.a.known_hosts", contains: "the directory \"/no/dir\" of \"/no/dir/kh\" does not exist")
    }

    @Test func passphraseSources() throws {
        var sys = FakeSystem()
        sys.files["/p"] = "x"
        expectSingleError(
            "[tunnels.a]\n\(validBody)\nidentity_passphrase_file = \"/p\"\nidentity_passphrase_credential = \"c\"\n",
            sys,
            line: 6, key: "tunnels.a",
            contains: "at most one of identity_passphrase_file and identity_passphrase_credential")
        // A tunnel's own choice replaces the one in [defaults].
        let c = try parseConfig(
            "[defaults]\nidentity_passphrase_file = \"/p\"\n[tunnels.a]\n\(validBody)\nidentity_passphrase_credential = \"c\"\n",
            sys)
        #expect(c.tunnels[0].identityPassphraseFile == nil)
        #expect(c.tunnels[0].identityPassphraseCredential == "c")
    }

    @Test func credentialCheckedOnlyWithCredentialsDirectory() throws {
        var sys = FakeSystem()
        let text = "[tunnels.a]\n\(validBody)\nidentity_passphrase_credential = \"gwpass\"\n"
        #expect(try parseConfig(text, sys).tunnels[0].identityPassphraseCredential == "gwpass")
        sys.variables["CREDENTIALS_DIRECTORY"] = "/run/credentials/x"
        expectSingleError(
            text, sys, line: 5, key: "tunnels.a.identity_passphrase_credential",
            contains: "credential \"gwpass\" not found")
        sys.files["/run/credentials/x/gwpass"] = "pw"
        #expect(try parseConfig(text, sys).tunnels.count == 1)
    }
}

@Suite struct DuplicateLocals {
    func tunnels(_ locals: [String]) -> String {
        locals.enumerated().map { i, l in
            "[tunnels.t\(i)]\ntarget = \"h.example\"\nlocal = \"\(l)\"\nremote = \"r.example:1\"\nallow_non_loopback = true\n"
        }.joined()
    }

    @Test func samePort() {
        let errors = configErrors(tunnels(["127.0.0.1:18789", "127.0.0.1:18789"]))
        #expect(errors.count == 1)
        #expect(errors.first?.line == 8)
        #expect(errors.first?.key == "tunnels.t1.local")
        #expect(errors.first?.message.contains("tunnel \"t0\" (line 3)") == true)
    }

    @Test(arguments: [
        (["0.0.0.0:80", "127.0.0.1:80"], true),
        (["127.0.0.1:80", "[::]:80"], true),
        (["10.1.1.1:80", "0.0.0.0:80"], true),
        (["localhost:80", "127.0.0.1:80"], true),
        (["[::1]:80", "localhost:80"], true),
        (["127.0.0.1:80", "127.0.0.2:80"], false),
        (["127.0.0.1:80", "127.0.0.1:81"], false),
        (["0.0.0.0:80", "[::1]:81"], false),
        (["[::1]:80", "127.0.0.1:80"], false),
    ])
    func overlap(locals: [String], conflict: Bool) {
        let text = tunnels(locals)
        if conflict {
            let errors = configErrors(text)
            #expect(errors.count == 1)
            #expect(errors.first?.line == 8)
            #expect(errors.first?.message.contains("overlaps local") == true)
        } else {
            #expect(throws: Never.self) { try parseConfig(text) }
        }
    }

    @Test func reportsEachAgainstTheFirst() {
        let errors = configErrors(tunnels(["127.0.0.1:5", "127.0.0.1:6", "127.0.0.1:5", "127.0.0.1:6"]))
        #expect(errors.map(\.line) == [13, 18])
        #expect(errors[0].message.contains("\"t0\" (line 3)"))
        #expect(errors[1].message.contains("\"t1\" (line 8)"))
    }
}

@Suite struct ManyErrors {
    @Test func allReportedInLineOrder() {
        let text = """
            [defaults]
            keepalive_interval = "soon"
            [tunnels.a]
            target = "ops@gw.example.net:99999"
            local = "0.0.0.0:80"
            remote = "x.example:1"
            sesions = 2
            [tunnels.b]
            ssh_host = "gw"
            target = "gw.example.net"
            local = "127.0.0.1:80"
            remote = 5
            enabled = yes
            [bogus]
            """
        let errors = configErrors(text)
        let summary = errors.map { "\($0.line) \($0.key ?? "-")" }
        #expect(
            summary == [
                "2 defaults.keepalive_interval",
                "4 tunnels.a.target",
                "5 tunnels.a.local",
                "7 tunnels.a.sesions",
                "10 tunnels.b",
                "11 tunnels.b.local",
                "12 tunnels.b.remote",
                "13 -",
                "14 -",
            ])
        let description = ConfigErrors(errors).description
        #expect(description.split(separator: "\n").count == 9)
        #expect(description.contains("/cfg/config.toml:13:11: invalid value yes"))
    }
}

@Suite struct Loading {
    @Test func missingFile() {
        let sys = FakeSystem()
        do {
            _ = try ConfigLoader.load(path: "/nowhere/config.toml", environment: sys.environment)
            Issue.record("expected an error")
        } catch {
            #expect(
                error.errors == [ConfigError(file: "/nowhere/config.toml", line: 0, message: "config file not found")])
            #expect(error.description == "/nowhere/config.toml: config file not found")
        }
    }

    @Test func loadsFromEnvironment() throws {
        var sys = FakeSystem()
        sys.files["/cfg/config.toml"] = "[tunnels.a]\n\(validBody)\n"
        let c = try ConfigLoader.load(path: "/cfg/config.toml", environment: sys.environment)
        #expect(c.tunnels.map(\.name) == ["a"])
    }

    @Test func invalidUTF8() {
        let sys = FakeSystem()
        var bytes = Array("[tunnels.a]\n\(validBody)\n# caf".utf8)
        bytes += [0xE9, 0x0A]  // Latin-1 é
        bytes += Array("user = \"x\u{1}\"\n".utf8)
        let fileBytes = bytes
        let base = sys.environment
        let env = ConfigEnvironment(
            home: base.home, user: base.user, fileExists: base.fileExists, readFile: base.readFile,
            readBytes: { $0 == "/cfg/bad.toml" ? fileBytes : nil })
        do {
            _ = try ConfigLoader.load(path: "/cfg/bad.toml", environment: env)
            Issue.record("expected errors")
        } catch {
            #expect(error.errors.map(\.line) == [5, 6])
            #expect(error.errors.first?.column == 6)
            #expect(error.errors.first?.message.contains("invalid UTF-8 (byte 0xE9)") == true)
            #expect(error.errors.last?.message.contains("U+0001") == true)
        }
    }

    @Test func decodeUTF8Ranges() {
        // Overlong, surrogate, too large, truncated.
        for bad: [UInt8] in [[0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82]] {
            let (_, errors) = ConfigLoader.decodeUTF8(Array("a\n".utf8) + bad, path: "p")
            #expect(errors.count == 1, "\(bad)")
            #expect(errors.first?.line == 2)
        }
        let (text, errors) = ConfigLoader.decodeUTF8(Array("ok é 😀\n".utf8), path: "p")
        #expect(errors.isEmpty)
        #expect(text == "ok é 😀\n")
    }
}
