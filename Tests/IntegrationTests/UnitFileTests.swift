import EctoTestSupport
import Foundation
import Testing

/// units/ is rendered from Sources/EctoOperator/UnitTemplates.swift (`make units`), the one source
/// of the unit files; the package, `make install` and `ecto-tunnel install` render the same text.
@Suite("unit files: one source")
struct UnitFileTests {
    private static let root = URL(fileURLWithPath: "\(#filePath)").deletingLastPathComponent()
        .deletingLastPathComponent()
        .deletingLastPathComponent().path

    @Test(
        "units/ is exactly what `ecto-tunnel unit-file` renders (run `make units` after editing UnitTemplates.swift)",
        arguments: ["ecto-tunnel.service", "ecto-tunnel@.service"])
    func unitsMatchTemplates(unit: String) throws {
        let rendered = try Subprocess.run(try ProductLocator.binary("ecto-tunnel"), ["unit-file", unit]).check().stdout
        let file = try String(contentsOfFile: Self.root + "/units/" + unit, encoding: .utf8)
        #expect(rendered == file, "units/\(unit) differs from UnitTemplates.swift: run `make units`")
        #expect(rendered.contains("\nExecStart=/usr/local/bin/ecto-tunnel run "))
    }

    @Test("--exec puts the binary in ExecStart= and nothing else changes; a bad name or a relative path is refused")
    func execPath() throws {
        let binary = try ProductLocator.binary("ecto-tunnel")
        let standard = try Subprocess.run(binary, ["unit-file", "ecto-tunnel@.service"]).check().stdout
        let packaged = try Subprocess.run(
            binary, ["unit-file", "ecto-tunnel@.service", "--exec", "/usr/bin/ecto-tunnel"]
        ).check().stdout
        #expect(
            packaged
                == standard.replacingOccurrences(
                    of: "ExecStart=/usr/local/bin/ecto-tunnel ", with: "ExecStart=/usr/bin/ecto-tunnel "))
        #expect(packaged != standard)
        let unknown = try Subprocess.run(binary, ["unit-file", "ecto.service"])
        #expect(
            unknown.status != 0
                && unknown.stderr.contains(
                    "unknown unit ecto.service: expected ecto-tunnel.service or ecto-tunnel@.service"),
            "\(unknown)")
        let relative = try Subprocess.run(binary, ["unit-file", "ecto-tunnel.service", "--exec", "bin/ecto-tunnel"])
        #expect(relative.status != 0 && relative.stderr.contains("--exec must be an absolute path"), "\(relative)")
    }

    @Test("--version prints the version of Sources/EctoPlatform/Version.swift, as scripts/version.sh reads it")
    func versionFromOnePlace() throws {
        let printed = try Subprocess.run(try ProductLocator.binary("ecto-tunnel"), ["--version"]).check().stdout
        let source = try Subprocess.run(Self.root + "/scripts/version.sh", []).check().stdout
        #expect(
            printed == source && printed.split(separator: ".").count == 3,
            "--version: \(printed), version.sh: \(source)")
    }
}
