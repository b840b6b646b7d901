import EctoTestSupport
import Foundation
import Glibc
import Testing

/// The repository root (for scripts/ and units/).
private func repositoryRoot(filePath: StaticString = #filePath) -> String {
    URL(fileURLWithPath: "\(filePath)").deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
}

/// The .deb that `make deb` built; `make test` passes it in ECTO_TEST_DEB.
private let debPath = ProcessInfo.processInfo.environment["ECTO_TEST_DEB"] ?? ""

/// Where the Swift toolchain lives; the package must work with it out of sight.
private let toolchain = "/opt/swift"

/// `sh -c SCRIPT` in a mount namespace of its own in which an empty tmpfs covers the toolchain,
/// after proving it is gone (`test ! -e /opt/swift/usr/bin/swift`).
private func withoutToolchain(_ script: String) -> [String] {
    [
        "--mount", "--propagation", "private", "sh", "-c",
        """
        set -e
        mount -t tmpfs -o mode=755,size=1m tmpfs \(toolchain)
        if test -e \(toolchain)/usr/bin/swift; then echo 'the toolchain is still visible' >&2; exit 97; fi
        \(script)
        """,
    ]
}

private func run(_ executable: String, _ arguments: [String], timeout: Duration = .seconds(120)) throws -> CommandResult
{
    var environment = ProcessInfo.processInfo.environment
    environment["DEBIAN_FRONTEND"] = "noninteractive"
    environment["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    return try Subprocess.run(executable, arguments, environment: environment, timeout: timeout)
}

/// Files every package must hold (`dpkg-deb -c`).
private let expectedFiles = [
    "./usr/bin/ecto-tunnel",
    "./usr/lib/systemd/user/ecto-tunnel.service",
    "./usr/lib/systemd/user/ecto-tunnel@.service",
    "./usr/libexec/swift/linux/swift-backtrace",
    "./usr/share/man/man1/ecto-tunnel.1.gz",
    "./usr/share/bash-completion/completions/ecto-tunnel",
    "./usr/share/zsh/vendor-completions/_ecto-tunnel",
    "./usr/share/fish/vendor_completions.d/ecto-tunnel.fish",
    "./usr/share/doc/ecto-tunnel/copyright",
    "./usr/share/doc/ecto-tunnel/changelog.gz",
    "./usr/share/doc/ecto-tunnel/README.md.gz",
    "./usr/share/lintian/overrides/ecto-tunnel",
]

/// The Debian package (`make deb`): what it holds, lintian, and a real install with apt-get on a
/// machine view without the Swift toolchain: the binary, a tunnel through a throwaway sshd, the
/// shipped unit under a real systemd --user, then purge. Runs only with ECTO_TEST_DEB (`make test`
/// sets it after building the package; a bare `swift test` skips this suite).
@Suite(
    "Debian package (make deb)", .serialized,
    .enabled(if: !debPath.isEmpty, "ECTO_TEST_DEB is not set (make test sets it)"))
struct PackageTests {
    @Test(
        "dpkg-deb -I/-c: name, Version = scripts/version.sh = --version, computed Depends, every file, units with ExecStart=/usr/bin"
    )
    func contentsAndFields() throws {
        let version = try run(repositoryRoot() + "/scripts/version.sh", []).check().stdout.trimmingCharacters(
            in: .whitespacesAndNewlines)
        #expect(
            debPath.hasSuffix(
                "/ecto-tunnel_\(version)_\(try run("dpkg", ["--print-architecture"]).check().stdout.trimmingCharacters(in: .whitespacesAndNewlines)).deb"
            ))
        func field(_ name: String) throws -> String {
            try run("dpkg-deb", ["-f", debPath, name]).check().stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(try field("Package") == "ecto-tunnel")
        #expect(try field("Version") == version)
        let depends = try field("Depends")
        for library in ["libc6 (>= ", "libssh2-1 (>= ", "libstdc++6 (>= ", "libgcc-s1 (>= "] {
            #expect(depends.contains(library), "Depends: \(depends)")
        }
        #expect(!depends.contains("swift"), "Depends: \(depends)")
        #expect(try !field("Description").isEmpty)
        #expect(try Int(field("Installed-Size")) ?? 0 > 1000)
        #expect(try run("dpkg-deb", ["-I", debPath]).check().stdout.contains("md5sums"))

        let listing = try run("dpkg-deb", ["-c", debPath]).check().stdout
        let files = Set(
            listing.split(separator: "\n").compactMap { line in line.split(separator: " ").last.map(String.init) })
        for file in expectedFiles { #expect(files.contains(file), "\(file) missing from:\n\(listing)") }
        for line in listing.split(separator: "\n") {
            #expect(line.contains(" root/root "), "owner: \(line)")
        }

        // The units in the package are units/ (one source) with ExecStart on /usr/bin.
        let directory = try TestDirectory(prefix: "ecto-deb")
        defer { directory.cleanup() }
        try run("dpkg-deb", ["-x", debPath, directory.path]).check()
        for unit in ["ecto-tunnel.service", "ecto-tunnel@.service"] {
            let packaged = try String(contentsOfFile: directory.path + "/usr/lib/systemd/user/" + unit, encoding: .utf8)
            let source = try String(contentsOfFile: repositoryRoot() + "/units/" + unit, encoding: .utf8)
            #expect(
                packaged
                    == source.replacingOccurrences(
                        of: "ExecStart=/usr/local/bin/ecto-tunnel ", with: "ExecStart=/usr/bin/ecto-tunnel "))
            #expect(packaged.contains("\nExecStart=/usr/bin/ecto-tunnel run "))
        }
        // The Swift runtime is inside: the binary names no libswift library it needs.
        let dynamic = try run("readelf", ["-d", directory.path + "/usr/bin/ecto-tunnel"]).check().stdout
        #expect(dynamic.contains("libssh2.so.1"))
        #expect(!dynamic.contains("libswift") && !dynamic.contains("libFoundation"), "\(dynamic)")
        // Function names stay for readable backtraces: a symbol table, no DWARF.
        let sections = try run("readelf", ["-S", "-W", directory.path + "/usr/bin/ecto-tunnel"]).check().stdout
        #expect(sections.contains(".symtab") && !sections.contains(".debug_info"), "\(sections)")
        // The man page is the generated one, and man reads it without a warning.
        let man = try run("sh", ["-c", "zcat '\(directory.path)/usr/share/man/man1/ecto-tunnel.1.gz' | head -20"])
            .check().stdout
        #expect(man.contains(".Dt ECTO-TUNNEL 1"), "\(man)")
    }

    @Test("lintian: no error, no warning (overrides explained in debian/ecto-tunnel.lintian-overrides)")
    func lintianClean() throws {
        let result = try run(
            "lintian", ["--fail-on", "error,warning", "--no-tag-display-limit", debPath], timeout: .seconds(300))
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(!result.stdout.contains("E: ") && !result.stdout.contains("W: "), "\(result.stdout)")
    }

    @Test(
        "apt-get install without the toolchain: --version, check, a tunnel, the shipped unit active under systemd --user with readable backtraces, purge leaves nothing"
    )
    func installRunPurge() async throws {
        let version = try run(repositoryRoot() + "/scripts/version.sh", []).check().stdout.trimmingCharacters(
            in: .whitespacesAndNewlines)
        #expect(
            FileManager.default.fileExists(atPath: toolchain + "/usr/bin/swift"),
            "the test needs the toolchain present, to prove it hidden")
        // A leftover from an interrupted run would hide what this install does.
        if try run("dpkg-query", ["-W", "-f", "${db:Status-Status}", "ecto-tunnel"]).stdout == "installed" {
            try run("apt-get", ["purge", "-y", "-q", "-o", "DPkg::Lock::Timeout=120", "ecto-tunnel"]).check()
        }
        let libexecSwiftExisted = FileManager.default.fileExists(atPath: "/usr/libexec/swift")
        defer { _ = try? run("apt-get", ["purge", "-y", "-q", "-o", "DPkg::Lock::Timeout=120", "ecto-tunnel"]) }

        let install = try run(
            "unshare",
            withoutToolchain("apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=120 '\(debPath)'"),
            timeout: .seconds(300))
        #expect(install.status == 0, "\(install.stdout)\(install.stderr)")
        try #require(
            FileManager.default.fileExists(atPath: "/usr/bin/ecto-tunnel"),
            "not installed: \(install.stdout)\(install.stderr)")

        // The binary alone, with the toolchain out of sight.
        let directory = try TestDirectory(prefix: "ecto-pkg")
        defer { directory.cleanup() }
        let server = try SSHServer()
        defer { server.cleanup() }
        let echo = try EchoServer()
        defer { echo.stop() }
        let key = try KeyPair.generate(type: "ed25519", in: directory, name: "id_client")
        try server.authorize(key)
        try server.start()
        let knownHosts = directory.file("known_hosts")
        try server.writeKnownHosts(to: knownHosts)
        let localPort = try FreePort.probe()
        let config = try directory.write(
            "config.toml",
            """
            [tunnels.t]
            target = "\(server.user)@127.0.0.1:\(server.port)"
            local = "127.0.0.1:\(localPort)"
            remote = "127.0.0.1:\(echo.port)"
            identity_file = "\(key.privatePath)"
            known_hosts = "\(knownHosts)"
            backoff_initial = "100ms"
            backoff_max = "500ms"

            """)
        let probe = try run(
            "unshare",
            withoutToolchain(
                """
                echo "ldd: $(ldd /usr/bin/ecto-tunnel | tr '\\n' ' ')"
                echo "version: $(/usr/bin/ecto-tunnel --version)"
                /usr/bin/ecto-tunnel check --config '\(config)'
                """))
        #expect(probe.status == 0, "\(probe.stdout)\(probe.stderr)")
        #expect(probe.stdout.contains("version: \(version)\n"), "\(probe.stdout)")
        #expect(
            probe.stdout.contains("libssh2.so.1") && !probe.stdout.contains("libswift")
                && !probe.stdout.contains("not found"), "\(probe.stdout)")
        #expect(probe.stdout.contains("\(config): OK, 1 tunnel"), "\(probe.stdout)")

        let socket = directory.file("control.sock")
        let daemon = try Subprocess(
            "unshare", withoutToolchain("exec /usr/bin/ecto-tunnel run --config '\(config)' --socket '\(socket)'"),
            environment: ["PATH": "/usr/bin:/bin", "HOME": directory.path],
            stdoutPath: directory.file("daemon.log"), stderrPath: directory.file("daemon.log"))
        defer { if daemon.isRunning { _ = daemon.terminate() } }
        try await waitUntil(timeout: .seconds(20), "an echo through the packaged daemon's tunnel\n\(daemon.stderr())") {
            (try? echoRoundTrip(port: localPort, seed: 7, count: 64 * 1024, timeout: .seconds(3))) == true
        }
        // `unshare` and `sh` exec'd: the pid is the daemon's, and its mount namespace has no toolchain.
        #expect(!FileManager.default.fileExists(atPath: "/proc/\(daemon.pid)/root\(toolchain)/usr/bin/swift"))
        let maps = (try? String(contentsOfFile: "/proc/\(daemon.pid)/maps", encoding: .utf8)) ?? ""
        #expect(
            maps.contains("/usr/bin/ecto-tunnel") && !maps.contains("libswift") && !maps.contains(toolchain), "\(maps)")
        let status = try run("/usr/bin/ecto-tunnel", ["status", "--json", "--socket", socket]).check().stdout
        #expect(
            status.contains("\"daemon_version\":\"\(version)\"") && status.contains("\"state\":\"up\""), "\(status)")
        #expect(daemon.terminate() == .exited(0), "\(daemon.stderr())")

        // The shipped unit under a real systemd --user that does not see the toolchain either.
        try await shippedUnitUnderSystemd(version: version)

        // Purge: nothing of the package is left.
        let purge = try run("apt-get", ["purge", "-y", "-q", "-o", "DPkg::Lock::Timeout=120", "ecto-tunnel"])
        #expect(purge.status == 0, "\(purge.stdout)\(purge.stderr)")
        #expect(try run("dpkg-query", ["-W", "-f", "${db:Status-Status}", "ecto-tunnel"]).stdout != "installed")
        let listing = try run("dpkg-deb", ["-c", debPath]).check().stdout
        for path in listing.split(separator: "\n").compactMap({ $0.split(separator: " ").last }) {
            let file = String(path.dropFirst())  // "./usr/bin/x" -> "/usr/bin/x"
            guard !file.hasSuffix("/") else { continue }
            #expect(!FileManager.default.fileExists(atPath: file), "left after purge: \(file)")
        }
        for left in [
            "/usr/share/doc/ecto-tunnel", "/var/lib/dpkg/info/ecto-tunnel.list",
            "/var/lib/dpkg/info/ecto-tunnel.md5sums",
        ] {
            #expect(!FileManager.default.fileExists(atPath: left), "left after purge: \(left)")
        }
        if !libexecSwiftExisted {
            #expect(
                !FileManager.default.fileExists(atPath: "/usr/libexec/swift"), "left after purge: /usr/libexec/swift")
        }
    }

    /// `ecto-tunnel install` (the packaged binary) enables /usr/lib/systemd/user/ecto-tunnel.service
    /// and writes no unit of its own; the service comes up with the tunnel; SIGABRT prints a
    /// symbolicated backtrace (the packaged backtracer, found by the linked-in runtime).
    private func shippedUnitUnderSystemd(version: String) async throws {
        let fixture = try SystemdFixture(hiding: [toolchain])
        defer { fixture.cleanup() }
        let result = try fixture.manager.runAsUser("/usr/bin/ecto-tunnel", ["install"])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)\n--- daemon log:\n\(fixture.daemonLog)")
        #expect(
            result.stdout.contains("using the installed unit /usr/lib/systemd/user/ecto-tunnel.service"),
            "\(result.stdout)")
        let ownUnit = fixture.manager.configHome + "/systemd/user/ecto-tunnel.service"
        #expect(!FileManager.default.fileExists(atPath: ownUnit), "install wrote \(ownUnit) next to the shipped unit")
        #expect(try fixture.property("FragmentPath") == "/usr/lib/systemd/user/ecto-tunnel.service")
        #expect(try fixture.property("ActiveState") == "active", "\(fixture.states)")
        #expect(try fixture.property("UnitFileState") == "enabled")
        #expect(try fixture.property("ExecStart").contains("path=/usr/bin/ecto-tunnel "))
        try await waitUntil(
            timeout: .seconds(15), "an echo through the shipped unit's tunnel\n\(fixture.socketsReport())"
        ) {
            (try? fixture.echoWorks(seed: 11)) == true
        }
        let pid = try fixture.mainPID()
        #expect(
            !FileManager.default.fileExists(atPath: "/proc/\(pid)/root\(toolchain)/usr/bin/swift"),
            "the service sees the toolchain")
        let maps = (try? String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8)) ?? ""
        #expect(maps.contains("/usr/bin/ecto-tunnel") && !maps.contains("libswift"), "\(maps)")
        let status = try fixture.manager.runAsUser("/usr/bin/ecto-tunnel", ["status", "--json"])
        #expect(status.stdout.contains("\"daemon_version\":\"\(version)\""), "\(status)")

        // A watchdog-style SIGABRT: every thread's backtrace, with function names.
        kill(pid, SIGABRT)
        // The log, not an event: the daemon is crashing; its backtrace is written only there.
        try await fixture.waitForLog("Backtrace took", timeout: .seconds(20))
        let log = fixture.daemonLog
        #expect(log.contains("Thread 1 \"abort signals\" crashed"), "\(log)")
        #expect(
            log.contains("ControlServer.start()") && log.contains(" in ecto-tunnel"),
            "backtrace without function names:\n\(log)")

        let uninstall = try fixture.manager.runAsUser("/usr/bin/ecto-tunnel", ["uninstall"])
        #expect(uninstall.status == 0, "\(uninstall.stdout)\(uninstall.stderr)")
        #expect(try fixture.property("UnitFileState") == "disabled")
        #expect(
            FileManager.default.fileExists(atPath: "/usr/lib/systemd/user/ecto-tunnel.service"),
            "uninstall removed the package's unit")
    }
}
