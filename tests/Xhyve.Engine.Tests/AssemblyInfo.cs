// The engine and its tests are Linux-only (KVM, ptys, signals).
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
