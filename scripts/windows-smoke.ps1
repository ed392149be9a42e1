# Smoke test of wimfs on a Windows machine with WinFsp installed.
#
#   scripts\windows-smoke.ps1 -Wim C:\images\install.wim [-Image 1] [-Esd C:\images\install.esd]
#                             [-Drivers C:\drivers\net] [-Wimfs target\release\wimfs.exe]
#
# 1. Copies the WIM (the original is never written), mounts it read-write
#    on a new empty folder (as DISM users give one), copies a driver folder
#    into Windows\INF\wimfs-smoke, commits, checks the WIM with
#    `wimfs verify` and the committed files with `wimfs cat`, unmounts.
# 2. Mounts an .esd read-only on a drive letter, lists it, checks that a
#    write is refused, unmounts.
# Stops at the first failure with a non-zero exit status. Nothing runs this
# on Linux: it is for a Windows machine (README, "Windows").

param(
    [Parameter(Mandatory = $true)][string]$Wim,
    [string]$Image = "1",
    [string]$Esd = "",
    [string]$Drivers = "",
    [string]$Wimfs = "target\release\wimfs.exe",
    [string]$Drive = "W:"
)

$ErrorActionPreference = "Stop"
Set-StrictMode -Version Latest

function Step([string]$what) { Write-Host "== $what" }

function Run([string[]]$argv) {
    Write-Host "   wimfs $($argv -join ' ')"
    & $Wimfs @argv
    if ($LASTEXITCODE -ne 0) { throw "wimfs $($argv -join ' ') failed (exit $LASTEXITCODE)" }
}

if (-not (Test-Path $Wimfs)) { throw "no wimfs at $Wimfs (cargo build --release --no-default-features)" }
$work = Join-Path $env:TEMP ("wimfs-smoke-" + [guid]::NewGuid().ToString("N").Substring(0, 8))
New-Item -ItemType Directory -Path $work | Out-Null
$copy = Join-Path $work "smoke.wim"
$mnt = Join-Path $work "mnt"

try {
    Step "copy $Wim"
    Copy-Item $Wim $copy

    if ($Drivers -eq "") {
        # A stand-in driver folder: an .inf and a binary.
        $Drivers = Join-Path $work "drivers"
        New-Item -ItemType Directory -Path $Drivers | Out-Null
        Set-Content -Path (Join-Path $Drivers "smoke.inf") -Value "[Version]`r`nSignature=`"`$Windows NT`$`"`r`n" -NoNewline
        $bytes = New-Object byte[] 1048576
        (New-Object System.Random 10).NextBytes($bytes)
        [System.IO.File]::WriteAllBytes((Join-Path $Drivers "smoke.sys"), $bytes)
    }

    Step "mount read-write on an existing empty folder"
    New-Item -ItemType Directory -Path $mnt | Out-Null
    Run @("mount", "--rw", $copy, $Image, $mnt)
    Run @("mounts")

    Step "copy the driver folder in"
    $dest = Join-Path $mnt "Windows\INF\wimfs-smoke"
    New-Item -ItemType Directory -Path $dest -Force | Out-Null
    Copy-Item -Path (Join-Path $Drivers "*") -Destination $dest -Recurse
    $want = @{}
    Get-ChildItem -Path $Drivers -Recurse -File | ForEach-Object {
        $rel = $_.FullName.Substring($Drivers.Length).TrimStart('\')
        $want[$rel] = (Get-FileHash $_.FullName -Algorithm SHA256).Hash
    }

    Step "commit and stay mounted"
    Run @("commit", $mnt)

    Step "unmount"
    Run @("unmount", $mnt, "--commit")
    if (-not (Test-Path $mnt -PathType Container)) { throw "the empty folder $mnt was not put back" }
    if ((Get-ChildItem $mnt -Force | Measure-Object).Count -ne 0) { throw "$mnt is not empty after the unmount" }

    Step "verify the WIM and the committed bytes"
    Run @("verify", $copy)
    foreach ($rel in $want.Keys) {
        $out = Join-Path $work "check.bin"
        $p = "/Windows/INF/wimfs-smoke/" + ($rel -replace '\\', '/')
        # Start-Process writes stdout to the file byte for byte (a
        # PowerShell pipeline would re-encode it); arguments quoted by hand.
        $proc = Start-Process -FilePath $Wimfs -NoNewWindow -Wait -PassThru `
            -ArgumentList @("cat", "`"$copy`"", $Image, "`"$p`"") -RedirectStandardOutput $out
        if ($proc.ExitCode -ne 0) { throw "wimfs cat $p failed (exit $($proc.ExitCode))" }
        $got = (Get-FileHash $out -Algorithm SHA256).Hash
        if ($got -ne $want[$rel]) { throw "$p differs in the WIM: $got, want $($want[$rel])" }
    }

    if ($Esd -ne "") {
        Step "mount $Esd read-only on $Drive"
        Run @("mount", $Esd, $Image, $Drive)
        $n = (Get-ChildItem "$Drive\" | Measure-Object).Count
        if ($n -eq 0) { throw "$Drive shows nothing" }
        $refused = $false
        try { Set-Content -Path "$Drive\wimfs-smoke.txt" -Value "x" } catch { $refused = $true }
        if (-not $refused) { throw "a write to the read-only mount $Drive succeeded" }
        Run @("unmount", $Drive)
    }

    Step "cleanup finds nothing dead"
    Run @("cleanup")
    Write-Host "windows-smoke: all passed"
}
finally {
    & $Wimfs unmount $mnt --discard 2>$null | Out-Null
    if ($Esd -ne "") { & $Wimfs unmount $Drive 2>$null | Out-Null }
    Remove-Item -Recurse -Force $work -ErrorAction SilentlyContinue
}
