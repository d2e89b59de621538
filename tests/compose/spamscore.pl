#!/usr/bin/perl
# Scores each .eml named on the command line with SpamAssassin's local rules (the same
# as `spamassassin -L -t`, but the rules are loaded once for all files). One line per
# file: path <TAB> score <TAB> comma-separated rule names.
use strict;
use warnings;
use Mail::SpamAssassin;

my $home = $ENV{SA_HOME} or die "SA_HOME not set\n";
my $sa = Mail::SpamAssassin->new({
    local_tests_only => 1,
    dont_copy_prefs => 1,
    userprefs_filename => "$home/user_prefs",
    userstate_dir => $home,
    home_dir_for_helpers => $home,
});
$sa->init(1);
for my $path (@ARGV) {
    open(my $fh, '<', $path) or die "$path: $!\n";
    my $raw = do { local $/; <$fh> };
    close($fh);
    my $mail = $sa->parse($raw);
    my $status = $sa->check($mail);
    printf "%s\t%.3f\t%s\n", $path, $status->get_score(), $status->get_names_of_tests_hit();
    $status->finish();
    $mail->finish();
}
