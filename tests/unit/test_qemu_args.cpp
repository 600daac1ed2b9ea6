// Which extra QEMU arguments bnf VMs may carry: what they need passes, the
// rest is refused by name, however it is spelt.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "launch/qemu_args.hpp"

namespace bnf::qemu {
namespace {

const std::string kVmDir = "/state/vms/web1";

Status check(const std::vector<std::string>& args, const QemuArgPolicy& policy = {}) {
  return policy.check(args, kVmDir);
}

// The refusal's message, "" when the arguments pass.
std::string refusal(const std::vector<std::string>& args, const QemuArgPolicy& policy = {}) {
  const Status s = check(args, policy);
  return s.is_ok() ? "" : s.message();
}

void expect_refused(const std::vector<std::string>& args, const std::string& names) {
  const std::string why = refusal(args);
  EXPECT_NE(why.find(names), std::string::npos) << "args: " << ::testing::PrintToString(args) << "\nsaid: " << why;
}

TEST(QemuArgs, WhatTheTestGuestsAndBenchUsePasses) {
  EXPECT_EQ(refusal({"-kernel", "/g/memcheck-guest.elf", "-append", "hot=1%"}), "");
  EXPECT_EQ(refusal({"-kernel", "/l/vmlinuz", "-initrd", "/l/initrd.cpio.gz", "-append",
                     "console=ttyS0 quiet bnf.fill=64 bnf.work=files"}),
            "");
}

TEST(QemuArgs, DisksDevicesNetworksAndConsolesPass) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"-drive", "file=/srv/disk.qcow2,if=virtio,format=qcow2,cache=none"},
           {"-drive", "if=none,id=d0,file=/srv/a,,b.img,format=raw"},  // ",," a comma in the file name
           {"-blockdev", "driver=file,node-name=f0,filename=/srv/disk.img"},
           {"-blockdev", "driver=qcow2,node-name=q0,file=f0"},
           {"-device", "virtio-blk-pci,drive=d0"},
           {"-device", "e1000,netdev=n0,romfile="},
           {"-netdev", "user,id=n0,hostfwd=tcp::2222-:22,hostfwd=tcp::8080-:80"},
           {"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"},
           {"-netdev", "bridge,id=n0,br=br0"},
           {"-netdev", "socket,id=n0,listen=:1234"},
           {"-netdev", "user,id=n0,hostname=a,,helper=x"},  // ",,": the hostname is "a,helper=x"
           {"-nic", "user,model=virtio-net-pci,mac=52:54:00:12:34:56"},
           {"-nic", "none"},
           {"-net", "nic,model=e1000"},
           {"-net", "user"},
           {"-chardev", "file,id=c0,path=/state/vms/web1/console.log"},
           {"-chardev", "socket,id=c1,path=/state/vms/web1/c.sock,server=on,wait=off"},
           {"-chardev", "null,id=c2"},
           {"-serial", "file:/state/vms/web1/ttyS1.log"},
           {"-serial", "unix:/state/vms/web1/s.sock,server,nowait"},
           {"-serial", "none"},
           {"-serial", "chardev:c0"},
           {"-object", "iothread,id=io0"},
           {"-object", "rng-random,id=r0,filename=/dev/urandom"},
           {"-cpu", "max"},
           {"-smp", "2"},
           {"-display", "none"},
           {"-vga", "std"},
           {"-nographic"},
           {"-rtc", "base=utc"},
           {"-boot", "order=c,menu=off"},
           {"-no-reboot"},
           {"-global", "e1000.romfile="},
           {"-fw_cfg", "name=opt/x,string=y"},
           {"-trace", "qemu_*"},
           {"--cpu", "max"},  // "--opt" is "-opt"
           {"-smp=2"},        // "-opt=value" is "-opt value"
       })
    EXPECT_EQ(refusal(args), "") << ::testing::PrintToString(args);
}

TEST(QemuArgs, ProgramsRunAsRootAreRefusedByName) {
  expect_refused({"-netdev", "bridge,id=n,helper=/tmp/x"},
                 "QEMU argument -netdev bridge,id=n,helper=/tmp/x is not allowed for bnf VMs: helper= runs a program "
                 "as root (allow -netdev as a whole with --allow-qemu-arg -netdev)");
  expect_refused({"-netdev", "tap,id=n,script=/tmp/x"}, "script= runs a program as root (only script=no)");
  expect_refused({"-netdev", "tap,id=n,downscript=/tmp/x"}, "downscript= runs a program as root");
  expect_refused({"-nic", "bridge,helper=/tmp/x"}, "helper= runs a program as root");
  expect_refused({"-net", "bridge,helper=/tmp/x"}, "helper= runs a program as root");
  expect_refused({"-netdev", "user,id=n,guestfwd=tcp:10.0.2.1:1-cmd:/tmp/x"}, "guestfwd= can run a program");
  expect_refused({"-netdev", "user,id=n,smb=/"}, "smb= runs smbd as root");
  expect_refused({"-netdev", "tap,id=n,fd=3"}, "fd= hands QEMU a descriptor");
}

TEST(QemuArgs, EscapesCannotHideAKey) {
  // ",,," is an escaped comma, then a separator: helper= is a key again.
  expect_refused({"-netdev", "bridge,id=n,br=br0,,,helper=/tmp/x"}, "helper= runs a program as root");
  expect_refused({"-netdev", "bridge,id=n,nohelper"}, "helper= runs a program");  // "nox" is x=off
  expect_refused({"-netdev", "user,id=n,type=bridge"}, "type= is given twice");
  expect_refused({"-netdev", "{\"type\":\"bridge\",\"id\":\"n\",\"helper\":\"/tmp/x\"}"}, "its JSON form");
  expect_refused({"-device", "{\"driver\":\"loader\",\"file\":\"/etc/shadow\"}"}, "its JSON form");
}

TEST(QemuArgs, OptionsOutsideTheListAreRefusedByNameHoweverSpelt) {
  for (const char* opt : {"-plugin", "--plugin", "-plugin=file=/tmp/x.so"})
    expect_refused({opt, "file=/tmp/x.so"},
                   "QEMU argument -plugin is not allowed for bnf VMs (allow it with "
                   "--allow-qemu-arg -plugin)");
  for (const char* opt : {"-add-fd", "-chroot", "-runas", "-readconfig", "-writeconfig", "-sandbox", "-loadvm",
                          "-pidfile", "-D", "-set", "-L", "-option-rom", "-numa", "-vnc", "-fsdev"})
    expect_refused({opt, "x"}, std::string("QEMU argument ") + opt);
  expect_refused({"-S"}, "QEMU argument -S is not allowed");
  expect_refused({"-run-with", "user=x"}, "QEMU argument -run-with is not a QEMU 7.2 option");
  expect_refused({"-trace", "qemu_*,file=/tmp/trace"}, "file= is not one bnf allows");
}

TEST(QemuArgs, WhatBnfSetsItselfIsRefused) {
  for (const char* opt : {"-m", "-incoming", "-qmp", "-machine", "-M", "-monitor", "-mon", "-name", "-accel", "--qmp",
                          "-daemonize", "-mem-path"})
    expect_refused({opt, "x"}, "is set by bnf itself");
  expect_refused({"-object", "memory-backend-ram,id=x,size=1M"}, "bnf owns guest RAM");
}

TEST(QemuArgs, ConsolesStayInTheVmsFolder) {
  expect_refused({"-chardev", "pipe,id=c,path=/tmp/p"}, "backend pipe is not one bnf allows");
  expect_refused({"-chardev", "file,id=c,path=/etc/cron.d/x"}, "path=/etc/cron.d/x is outside the VM's folder");
  expect_refused({"-chardev", "file,id=c,path=/state/vms/web1/../../peer.key"}, "is outside the VM's folder");
  expect_refused({"-chardev", "socket,id=c,host=0.0.0.0,port=4444,server=on"}, "a socket console is a UNIX socket");
  expect_refused({"-chardev", "null,id=c,logfile=/root/x"}, "logfile=/root/x is outside");
  expect_refused({"-serial", "pipe:/tmp/p"}, "consoles go to");
  expect_refused({"-serial", "tcp::4444,server"}, "consoles go to");
  expect_refused({"-serial", "mon:stdio"}, "consoles go to");
  expect_refused({"-serial", "file:/tmp/x"}, "outside the VM's folder");
  expect_refused({"-serial", "unix:/var/run/docker.sock"}, "outside the VM's folder");
}

TEST(QemuArgs, DisksAreFilesAndDevicesStayInTheGuest) {
  expect_refused({"-drive", "file=nbd:host:10809"}, "file=nbd:host:10809 is not an absolute path");
  expect_refused({"-drive", "file=json:{\"driver\":\"nbd\"}"}, "is not an absolute path");
  expect_refused({"-drive", "file=/x,file.driver=nbd"}, "file.driver= is not one bnf allows");
  expect_refused({"-drive", "file=/x,format=vvfat"}, "format=vvfat");
  expect_refused({"-cdrom", "http://host/x.iso"}, "is not an absolute path");
  expect_refused({"-blockdev", "driver=nbd,node-name=n,server.type=inet"}, "driver=nbd");
  expect_refused({"disk.img"}, "QEMU argument 'disk.img' is not an option");
  expect_refused({"-device", "vfio-pci,host=01:00.0"}, "device vfio-pci reaches into the host");
  expect_refused({"-device", "loader,file=/etc/shadow,addr=0x1000"}, "device loader reaches into the host");
  expect_refused({"-device", "e1000,romfile=/etc/shadow"}, "romfile= reads a host file");
  expect_refused({"-global", "e1000.romfile=/etc/shadow"}, "romfile= reads a host file");
  expect_refused({"-object", "secret,id=s,file=/etc/shadow"}, "qom-type secret is not one bnf allows");
  expect_refused({"-object", "rng-random,id=r,filename=/dev/sda"}, "filename=/dev/sda");
  expect_refused({"-display", "vnc=:0"}, "bnf VMs have no display");
  expect_refused({"-fw_cfg", "name=opt/x,file=/etc/shadow"}, "file= is not one bnf allows");
}

TEST(QemuArgs, ValuesAndFlagsAreWhereQemuFindsThem) {
  expect_refused({"-kernel"}, "QEMU argument -kernel needs a value");
  expect_refused({"-nographic=on"}, "QEMU argument -nographic takes no value");
  // A value that looks like an option is still the value, as QEMU reads it.
  EXPECT_EQ(refusal({"-append", "-plugin"}), "");
}

TEST(QemuArgs, AnOperatorAllowsAnOptionAsAWhole) {
  auto policy = QemuArgPolicy::allowing({"-plugin", "--netdev", "icount"});
  ASSERT_TRUE(policy.is_ok()) << policy.status().message();
  EXPECT_EQ(refusal({"--plugin", "file=/opt/p.so"}, *policy), "");
  EXPECT_EQ(refusal({"-netdev", "bridge,id=n,helper=/usr/local/bin/h"}, *policy), "");
  EXPECT_EQ(refusal({"-icount", "shift=auto"}, *policy), "");
  EXPECT_NE(refusal({"-chardev", "pipe,id=c,path=/tmp/p"}, *policy), "");  // only what was named
  EXPECT_EQ(QemuArgPolicy::allowing({"-m"}).status().message(), "--allow-qemu-arg -m: bnf sets -m itself");
  EXPECT_EQ(QemuArgPolicy::allowing({"-run-with"}).status().message(),
            "--allow-qemu-arg -run-with: QEMU 7.2 has no option -run-with");
}

}  // namespace
}  // namespace bnf::qemu
