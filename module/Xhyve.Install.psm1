# Runs once per Import-Module, before any cmdlet can start a VM (a nested module of Xhyve.psd1).
# A .nupkg is a zip whose entries carry no Unix file mode (Publish-PSResource writes none), so a module
# installed with Install-PSResource or Save-PSResource has an engine host `xhyve` that cannot be executed;
# Start-XhyveVM runs the one beside the module's assemblies. The first import gives it its execute bits back.
Set-StrictMode -Version Latest

if (-not $IsWindows) {
    $engine = Join-Path $PSScriptRoot 'xhyve'
    if ([IO.File]::Exists($engine)) {
        $mode = [IO.File]::GetUnixFileMode($engine)
        $execute = [IO.UnixFileMode]'UserExecute, GroupExecute, OtherExecute'
        if (($mode -band $execute) -ne $execute) {
            try { [IO.File]::SetUnixFileMode($engine, $mode -bor $execute) }
            catch {
                # Installed by another user (e.g. -Scope AllUsers as root): only the owner may change it.
                Write-Warning "The engine host $engine is not executable and this user cannot change that ($($_.Exception.Message)); run: chmod a+x '$engine'"
            }
        }
    }
}
